"""Roles within a stage: `hosts.<role>` beside `hosts` (role "app"), `primary`, and the per-role keys
`KEY.<role>` (KEY in PER_ROLE) that override the stage's KEY for that role's hosts.

A stage's hosts are read in two steps: read_role_hosts gives every role's hosts (the plain `hosts` first), for
the checks across sections; read_roles, once the stage's own keys are read, builds each Role with its keys
and picks the primary host. A host is in one role only.
"""
from __future__ import annotations

import re

from . import rules
from .model import APP_ROLE, Host, Role
from .reader import Ini, Key, Problem, Section, checked, command, host
from .values import host_key, split_list

ROLE_RE = re.compile(r"^[A-Za-z0-9_]+$")


def hosts(value: str, sec: Section) -> tuple[Host, ...]:
    specs = split_list(value)
    if not specs:
        raise Problem("missing; list the stage's hosts, e.g. hosts = ssh://deploy@web1:22 (or local)")
    found: dict[tuple, Host] = {}
    for h in map(host, specs):
        other = found.setdefault(host_key(h), h)
        if other is not h:
            raise Problem(f"{h} is listed twice; list each host once" if other.spec == h.spec else
                          f"{other} and {h} are one host (the same login, port and machine: localhost, 127.0.0.1 "
                          "and ::1 are this machine's one name); list it once")
    return tuple(found.values())


def batch(value: str, sec: Section) -> str:
    if not re.fullmatch(r"\d+%?", value) or int(value.rstrip("%")) == 0:
        raise Problem(f"{value!r} is not a number of hosts or a share like 50%")
    return value


def role_hosts(value: str, sec: Section) -> tuple[Host, ...]:
    """`hosts.<role>`: like `hosts`, and no host of another role."""
    if not split_list(value):
        raise Problem(f"missing; list the role's hosts, e.g. {sec.key} = ssh://deploy@worker1:22, or remove the key")
    found = hosts(value, sec)
    for other, other_hosts in sec.scope["taken"].items():
        keys = {host_key(h): h for h in other_hosts}
        clash = next((h for h in found if host_key(h) in keys), None)
        if clash is not None:
            raise Problem(f"{clash} is already in {other}; a host has one role: list it in one of them")
    return found


def primary(value: str, sec: Section) -> Host:
    stage_hosts = sec.scope["all_hosts"]
    if not value:
        return stage_hosts[0]
    wanted = host_key(host(value))
    found = next((h for h in stage_hosts if host_key(h) == wanted), None)
    if found is None:
        raise Problem(f"{value} is not one of the stage's hosts; name one listed in hosts or hosts.<role>")
    return found


# the keys a role may set for itself, as `KEY.<role>`: the stage's KEY is the default
PER_ROLE: dict[str, Key] = {
    "reload_command": Key(command, "", "reload_command for that role's hosts (empty: none)", shell=True),
    "build_command": Key(command, "", "build_command for that role's hosts (empty: none)", shell=True),
    "health_url": Key(checked(rules.health_url_problem), "", "health_url for that role's hosts (empty: none)"),
    "batch": Key(batch, "", "batch for that role's hosts"),
}
# what docs/configuration.md lists (scripts/config_docs.py)
ROLE_KEYS: dict[str, Key] = {
    "hosts.<role>": Key(role_hosts, "", "the hosts of the role <role> (letters, digits, _), as hosts; a host has "
                        "one role; hosts itself is the role app"),
    "primary": Key(primary, "<the first of hosts>", "the host that runs migrations and one-off commands (run:, "
                   "console:); one of the stage's hosts"),
    **{f"{k}.<role>": Key(spec.parse, f"<{k}>", spec.doc, shell=spec.shell) for k, spec in PER_ROLE.items()},
}


def role_names(ini: Ini, section: str) -> list[str]:
    """The roles the section's `hosts.<role>` keys declare, in file order."""
    return [key.partition(".")[2] for key in ini.cp[section] if key.startswith("hosts.")]


def role_key_problems(ini: Ini, section: str, suffixed: tuple[str, ...], declared: bool = True) -> dict[str, str]:
    """Each `<key>.<suffix>` of the section (key in suffixed, or hosts) that is wrong, with its one line; the
    others are allowed (allowed_role_keys). declared: the role must be one of the section's hosts.<role>."""
    roles = role_names(ini, section)
    out = {}
    for key in ini.cp[section]:
        base, dot, role = key.partition(".")
        if not dot or base not in (*suffixed, "hosts"):
            continue
        if not ROLE_RE.match(role):
            out[key] = f"{role!r} is not a role name; use letters, digits and _"
        elif base == "hosts" and role == APP_ROLE:
            out[key] = f"{APP_ROLE} is the role of hosts; list these hosts in hosts, or name the role otherwise"
        elif declared and base != "hosts" and role != APP_ROLE and role not in roles:
            out[key] = (f"the stage has no role {role}; add hosts.{role} = <its hosts>, or fix the name "
                        f"(roles: {', '.join([APP_ROLE, *roles])})")
    return out


def allowed_role_keys(ini: Ini, section: str, suffixed: tuple[str, ...]) -> set[str]:
    """The section's `<key>.<role>` keys (key in suffixed, or hosts): role_key_problems judges them."""
    return {k for k in ini.cp[section] if k.partition(".")[0] in (*suffixed, "hosts") and "." in k}


def read_role_hosts(ini: Ini, section: str, app_hosts: tuple[Host, ...]) -> dict[str, tuple[Host, ...]]:
    """{role: its hosts}: "app" (the plain hosts) first, then each `hosts.<role>` in file order."""
    out = {APP_ROLE: app_hosts}
    for role in role_names(ini, section):
        key = f"hosts.{role}"
        sec = Section(ini, section, {key: Key(role_hosts)}, taken={
            ("hosts" if r == APP_ROLE else f"hosts.{r}"): h for r, h in out.items()})
        out[role] = sec.read()[key]
    return out


def read_roles(ini: Ini, section: str, by_role: dict[str, tuple[Host, ...]], base: dict,
               project) -> tuple[tuple[Role, ...], Host]:
    """Each role with its keys (`KEY.<role>`, else the stage's KEY; build_command: the project's), and the
    primary host. base: the stage's own values of the keys of PER_ROLE but build_command."""
    all_hosts = tuple(h for hs in by_role.values() for h in hs)
    base = {**base, "build_command": project.build_command}
    roles = []
    for name, hosts in by_role.items():
        table = {f"{k}.{name}": Key(spec.parse, base[k], spec.doc, shell=spec.shell) for k, spec in PER_ROLE.items()}
        values = Section(ini, section, table).read()
        roles.append(Role(name, hosts, **{k: values[f"{k}.{name}"] for k in PER_ROLE}))
    chosen = Section(ini, section, {"primary": Key(primary)}, all_hosts=all_hosts).read()["primary"]
    return tuple(roles), chosen
