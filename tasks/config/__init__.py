"""stages.ini -> frozen dataclasses. All validation lives here and in the modules of this package it reads
with; every other module trusts the result and imports it from here.

Every error is a ConfigError whose message is one line naming the file, line, section and key, and what
to change. Nothing here touches a host or a database. The pieces:

    model       the dataclasses (Config, Project, Database, Stage, Host, S3Store) and ConfigError
    reader      the file, and one section read by its table of keys: Key(parse, default, doc)
    project     [project]'s table            database  [database:<name>]'s tables (per engine)
    stage       [stage:<name>]'s table, hosts, and the keys a stage inherits from [project]
    roles       hosts.<role>, primary and the per-role keys KEY.<role>
    hooks       the hook keys of both (before_<node>, after_<node>, on_success, on_failure)
    checks      rules across sections: links, promote_from, restore targets, relative paths
    appenv      [env], [secrets] and their [env:<stage>], [secrets:<stage>]; reading the secrets' values
    values      pure parsers of one value (host, duration, list, S3 endpoint)
    rules       what a value may look like before it reaches an argv, a host path or SQL
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from . import appenv
from . import database as config_database
from .checks import check_host_spellings, check_restore_targets, check_stage_graph, resolve_paths
from .database import MAX_LOCK_RETRIES, MAX_LOCK_TIMEOUT, read_database
from .hooks import HOOK_NODES, HOOKS
from .model import (
    BUCKET_RE,
    PREFIX_RE,
    Config,
    ConfigError,
    Database,
    Hook,
    Host,
    Project,
    Role,
    S3Store,
    Secret,
    Stage,
    parse_store,
    split_command,
)
from .project import BUILDS, PROJECT, read_project
from .reader import Ini
from .roles import PER_ROLE, ROLE_KEYS, allowed_role_keys, role_key_problems
from .stage import STAGE, read_hosts, read_stage
from .values import (
    DURATION_RE,
    DURATION_UNITS,
    NAME_RE,
    REGION_RE,
    check_endpoint,
    host_key,
    parse_duration,
    parse_host,
    split_list,
)

__all__ = ["BUCKET_RE", "BUILDS", "Config", "ConfigError", "DATABASE_KEYS", "DURATION_RE", "DURATION_UNITS",
           "Database", "HOOKS", "HOOK_NODES", "Hook", "Host", "MAX_LOCK_RETRIES", "MAX_LOCK_TIMEOUT", "NAME_RE",
           "PREFIX_RE", "PROJECT_KEYS", "Project", "REGION_RE", "ROLE_KEYS", "Role", "S3Store", "STAGE_KEYS",
           "Secret", "Stage",
           "check_endpoint", "config_path", "host_key", "load_config", "parse_duration", "parse_host", "parse_store",
           "split_command", "split_list"]

PROJECT_KEYS = set(PROJECT)
DATABASE_KEYS = set(config_database.KEYS)
STAGE_KEYS = set(STAGE)


def config_path(environ: dict | None = None, base: str | Path | None = None) -> Path:
    """$STAGES_INI, else ./stages.ini; a relative path is taken from `base` (where the user ran doit)."""
    environ = os.environ if environ is None else environ
    path = Path(environ.get("STAGES_INI") or "stages.ini")
    return path if path.is_absolute() else Path(base or os.getcwd()).absolute() / path


def load_config(path: Path | str | None = None, environ: dict | None = None) -> Config:
    path = Path(path).absolute() if path else config_path(environ)
    environ = os.environ if environ is None else environ
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; create a stages.ini or point STAGES_INI at one")
    return read_config(Ini(path, read_utf8(path), environ))


def read_utf8(path: Path) -> str:
    """The file's text: UTF-8 (a BOM is allowed); anything else is one line naming the file and what to do."""
    data = path.read_bytes()
    fix = "save it as UTF-8 (in your editor's encoding setting, or: iconv -f <its encoding> -t UTF-8)"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise ConfigError(f"{path}: the file is UTF-16 (or another wide encoding), not UTF-8; {fix}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the file is not UTF-8 (byte 0x{data[exc.start]:02x}, e.g. Latin-1 "
                          f"text); {fix}") from None


def read_config(ini: Ini) -> Config:
    """The sections in the order their defaults need: project, every stage's hosts, databases, stages."""
    sections = ini.cp.sections()
    stage_names = [s[6:] for s in sections if s.startswith("stage:")]
    for s in sections:
        kind, _, name = s.partition(":")
        if s != "project" and not appenv.check_section(ini, s, stage_names) and (
                kind not in ("database", "stage") or not NAME_RE.match(name)):
            ini.fail(s, None, "unknown section; use [project], [database:<name>], [stage:<name>], [env], "
                              "[secrets] or [env:<stage>], [secrets:<stage>]")
    if "project" not in sections:
        raise ConfigError(f"{ini.path.name}: no [project] section; add one with at least name = and source =")
    project = read_project(ini)
    stage_sections = [s for s in sections if s.startswith("stage:")]
    for s in stage_sections:
        suffixed = (*PER_ROLE, *HOOKS)
        ini.check_keys(s, {**STAGE, **HOOKS, "primary": None, **dict.fromkeys(allowed_role_keys(ini, s, suffixed))},
                       role_key_problems(ini, s, suffixed))
    stage_hosts = {s[6:]: read_hosts(ini, s) for s in stage_sections}
    databases = {s[9:]: read_database(ini, s, stage_hosts) for s in sections if s.startswith("database:")}
    check_host_spellings(ini, stage_hosts, databases)
    app_env = appenv.read_app_env(ini, stage_hosts)
    stages = {n: replace(read_stage(ini, f"stage:{n}", hosts, project, databases), env=app_env[n][0],
                         secrets=app_env[n][1]) for n, hosts in stage_hosts.items()}
    if not stages:
        raise ConfigError(f"{ini.path.name}: no [stage:<name>] section; add [stage:test] with hosts = local")
    check_stage_graph(ini, stages)
    check_restore_targets(ini, stages, databases)
    all_local = all(h.local for st in stages.values() for h in st.hosts) and all(
        d.backup_host is None or d.backup_host.local for d in databases.values())
    project, databases = resolve_paths(ini, project, databases, all_local)
    return Config(ini.path, project, databases, stages)
