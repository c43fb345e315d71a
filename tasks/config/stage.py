"""[stage:<name>]: its keys, each with its parser, default and doc; the hosts of a stage; read_stage.

A stage is read in two passes: its `hosts` and `hosts.<role>` first (read_hosts, for every stage, since a
database's backup_host defaults to the first host of the first stage using it), then the rest (read_stage),
with the project and the databases in scope, and its roles last (config/roles.py). The keys of INHERITED
default to the project's value (FromProject).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import rules
from .hooks import read_hooks
from .model import Host, Stage
from .project import buildout_config
from .reader import (
    Ini,
    Key,
    Problem,
    Section,
    checked,
    command,
    duration,
    headers,
    optional,
    timeout,
    whole,
)
from .roles import PER_ROLE, batch, hosts, read_role_hosts, read_roles


def database(value: str, sec: Section) -> str | None:
    databases, stage_hosts = sec.scope["databases"], sec.values["hosts"]
    if value and value not in databases:
        raise Problem(f"names [database:{value}], which does not exist; add it or fix the name")
    if value and databases[value].engine == "sqlite" and len(set(stage_hosts)) > 1:
        raise Problem(f"{len(set(stage_hosts))} hosts share [database:{value}], an sqlite file: each host would "
                      "have its own database; use one host, or engine = mysql or postgresql", key="hosts")
    return value or None


def restore_from(value: str, sec: Section) -> str | None:
    if value and value not in sec.scope["databases"]:
        raise Problem(f"names [database:{value}], which does not exist; add it or fix the name")
    if value and not sec.values["database"]:
        raise Problem("needs database = (the database to refresh)")
    if value and value == sec.values["database"]:
        raise Problem("must name another database than the stage's own")
    return value or None


def link(value: str, sec: Section) -> str:
    """Below deploy_root, out of the tool's own directories; against other stages' links: config_checks."""
    problem = rules.link_problem(value, sec.scope["stage"], {})  # an empty `link =` too: it would be deploy_root
    if problem:
        raise Problem(problem)
    return value


def settings(value: str, sec: Section) -> str:
    problem = rules.settings_problem(value)
    if problem:
        raise Problem(problem)
    if sec.values["database"] and not value:
        raise Problem("missing; name the DJANGO_SETTINGS_MODULE this stage runs with")
    return value


def header_text(pairs: tuple[tuple[str, str], ...]) -> str:
    """health_headers as written, from its value (config_values.parse_headers reads it back the same)."""
    return ", ".join(f"{name}: {value}" for name, value in pairs)


@dataclass(frozen=True)
class FromProject:
    """The default of a key a stage may set and otherwise takes from [project]: the project's value."""
    key: str
    unit: str = ""     # the text of an int value: health_timeout and reload_timeout are seconds
    text: Callable[[Any], str] = str   # the text of another value

    def __call__(self, sec: Section) -> str:
        return f"{self.text(getattr(sec.scope['project'], self.key))}{self.unit}"


STAGE: dict[str, Key] = {
    "hosts": Key(hosts, "", "comma-separated: ssh://[user@]host[:port] or 'local' for this machine"),
    "database": Key(database, "", "the [database:<name>] the stage runs on; none: code only"),
    "restore_from": Key(restore_from, "", "the database whose newest backup restore:<stage> loads into it"),
    "link": Key(link, lambda sec: f"sites/{sec.scope['stage']}", "the live link below deploy_root"),
    "settings": Key(settings, "", "the DJANGO_SETTINGS_MODULE the stage runs with"),
    "health_url": Key(checked(rules.health_url_problem), FromProject("health_url"),
                      "checked after a switch; {host} is the host's HostName (ssh -G)"),
    "batch": Key(batch, "100%", "rolling switch: hosts per batch, a number or a share"),
    "promote_from": Key(optional, "", "the stage whose release promote:<stage> takes"),
    "health_timeout": Key(duration, FromProject("health_timeout", "s"), "how long the health check may take"),
    "reload_command": Key(command, FromProject("reload_command"), "run on each host after a switch", shell=True),
    "reload_timeout": Key(timeout, FromProject("reload_timeout", "s"),
                          "how long reload_command may run on a host before it counts as failed"),
    "console_command": Key(command, FromProject("console_command"),
                           "doit console:<stage>: the interactive command run in the live release", shell=True),
    "log_command": Key(command, FromProject("log_command"), "doit logs:<stage>: the command followed on every "
                       "host, in deploy_root", shell=True),
    "max_fail": Key(whole(0), "0", "hosts that may fail the switch and stay behind; more: all go back"),
    "buildout_config": Key(buildout_config, FromProject("buildout_config"),
                           "build = buildout: this stage's config"),
    "health_headers": Key(headers, FromProject("health_headers", text=header_text),
                          "sent with the health check, e.g. X-Forwarded-Proto: https, Host: blog.example.com"),
}
# the keys a stage may set and otherwise takes from [project]
INHERITED = tuple(k for k, spec in STAGE.items() if isinstance(spec.default, FromProject))


def read_hosts(ini: Ini, section: str) -> tuple[Host, ...]:
    """Every host of the stage: `hosts` (role app) first, then each `hosts.<role>`'s (config/roles.py)."""
    return tuple(h for hs in _role_hosts(ini, section).values() for h in hs)


def _role_hosts(ini: Ini, section: str) -> dict[str, tuple[Host, ...]]:
    sec = Section(ini, section, {"hosts": STAGE["hosts"]})
    return read_role_hosts(ini, section, sec.read()["hosts"])


def read_stage(ini: Ini, section: str, hosts: tuple[Host, ...], project, databases) -> Stage:
    name = section.partition(":")[2]
    sec = Section(ini, section, STAGE, {"hosts": hosts}, stage=name, project=project, databases=databases)
    values = sec.read()
    roles, primary = read_roles(ini, section, _role_hosts(ini, section),
                                {k: values[k] for k in PER_ROLE if k != "build_command"}, project)
    return Stage(name=name, **values, hooks=read_hooks(ini, section, project, roles=[r.name for r in roles]),
                 roles=roles, primary=primary)
