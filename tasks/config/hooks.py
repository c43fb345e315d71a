"""The hook keys of [project] and [stage:<name>]: before_<node> and after_<node> for node in HOOK_NODES, and
on_success, on_failure. A value is a command (split like every *_command key), run on every host of the
stage, or, prefixed `local:`, once on the deploying machine. A stage takes the project's hook of a key unless
it writes the key itself (`before_build =` with nothing: no hook for that stage). `<key>.<role>` is that
role's hosts' hook instead (config/roles.py; empty: none for that role), never a `local:` one.
"""
from __future__ import annotations

from .model import Hook, split_command
from .reader import Ini, Key, Problem, Section

HOOK_NODES = ("upload", "build", "migrate", "switch", "verify")
LOCAL = "local:"

DOCS = {
    "before": "run before {node}:<stage> changes anything; a failure fails the node",
    "after": "run after {node}:<stage> did its work; a failure fails the node",
}


def hook(value: str, sec: Section) -> Hook | None:
    """`command args` (on every host) or `local: command args` (here), split at load; "" is no hook."""
    key, _, role = sec.key.partition(".")
    if not value:
        return Hook(key, "", False, (), role) if role and sec.written(sec.key) else None
    local = value.startswith(LOCAL)
    if local and role:
        raise Problem(f"a local: hook runs once on this machine, for no role; write it as {key}")
    text = value[len(LOCAL):].strip() if local else value
    try:
        argv = split_command(text)
    except ValueError as exc:
        raise Problem(str(exc)) from None
    if not argv:
        raise Problem("local: names no command; write local: <command>, or leave the key empty for no hook")
    return Hook(key, value, local, argv, role)


def inherited(sec: Section) -> str:
    """A stage's default: the project's hook of the key (of `key.<role>`: that role's), as written."""
    project = sec.scope.get("project")
    key, _, role = sec.key.partition(".")
    found = next((h for h in project.hooks if h.key == key and h.role == role), None) if project else None
    return found.command if found else ""


def _doc(key: str) -> str:
    when, _, node = key.partition("_")
    return DOCS[when].format(node=node)


HOOKS: dict[str, Key] = {
    **{k: Key(hook, inherited, _doc(k), shell=True)
       for node in HOOK_NODES for k in (f"before_{node}", f"after_{node}")},
    "on_success": Key(hook, inherited, "run once after a command that names the stage succeeded", shell=True),
    "on_failure": Key(hook, inherited, "run once after a command that names the stage failed (DEPLOY_ERROR: why)",
                      shell=True),
}
HOOKS["after_switch"] = Key(hook, inherited, "run on each host after its switch and reload, before its health "
                            "check; a failure is a failed reload (the host goes back; beyond max_fail, every host)",
                            shell=True)


def read_hooks(ini: Ini, section: str, project=None, roles=None) -> tuple[Hook, ...]:
    """The section's hooks (a stage's: its own, else the project's), in the table's order, then the role
    hooks: a stage's for each of its roles (its own `key.<role>`, else the project's); the project's, every
    `key.<role>` it writes."""
    if roles is None:
        suffixed = [k for k in ini.cp[section] if k.partition(".")[0] in HOOKS and "." in k]
    else:
        suffixed = [f"{k}.{r}" for r in roles for k in HOOKS]
    table = {**HOOKS, **{k: HOOKS[k.partition(".")[0]] for k in suffixed}}
    values = Section(ini, section, table, project=project).read()
    return tuple(h for h in values.values() if h is not None)
