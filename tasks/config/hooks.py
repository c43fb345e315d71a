"""The hook keys of [project] and [stage:<name>]: before_<node> and after_<node> for node in HOOK_NODES, and
on_success, on_failure. A value is a command (split like every *_command key), run on every host of the
stage, or, prefixed `local:`, once on the deploying machine. A stage takes the project's hook of a key unless
it writes the key itself (`before_build =` with nothing: no hook for that stage). The `.<role>` suffix of the
design needs roles, which do not exist yet: such a key is refused with one line (role_keys).
"""
from __future__ import annotations

from .model import Hook, split_command
from .reader import Ini, Key, Problem, Section

HOOK_NODES = ("upload", "build", "migrate", "switch", "verify")
LOCAL = "local:"
NOT_YET = "roles are not supported yet: a hook runs on every host of the stage; write {key} instead"

DOCS = {
    "before": "run before {node}:<stage> changes anything; a failure fails the node",
    "after": "run after {node}:<stage> did its work; a failure fails the node",
}


def hook(value: str, sec: Section) -> Hook | None:
    """`command args` (on every host) or `local: command args` (here), split at load; "" is no hook."""
    if not value:
        return None
    local = value.startswith(LOCAL)
    text = value[len(LOCAL):].strip() if local else value
    try:
        argv = split_command(text)
    except ValueError as exc:
        raise Problem(str(exc)) from None
    if not argv:
        raise Problem("local: names no command; write local: <command>, or leave the key empty for no hook")
    return Hook(sec.key, value, local, argv)


def inherited(sec: Section) -> str:
    """A stage's default: the project's hook of the key, as written."""
    project = sec.scope.get("project")
    found = project.hook(sec.key) if project is not None else None
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


def role_keys(ini: Ini, section: str) -> dict[str, str]:
    """Each `<hook key>.<role>` of the section, with the one line that refuses it."""
    out = {}
    for key in ini.cp[section]:
        base, dot, _ = key.partition(".")
        if dot and base in HOOKS:
            out[key] = NOT_YET.format(key=base)
    return out


def read_hooks(ini: Ini, section: str, project=None) -> tuple[Hook, ...]:
    """The section's hooks (a stage's: its own, else the project's), in the table's order."""
    values = Section(ini, section, HOOKS, project=project).read()
    return tuple(h for h in values.values() if h is not None)
