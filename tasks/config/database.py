"""[database:<name>]: the keys of every engine, then those of its engine (SQLITE, MYSQL or POSTGRESQL), each
with its parser, default and doc; read_database builds the Database.

A key of another engine is refused, and so is `password` (a password never goes into stages.ini). The
password itself is read here, once, from the environ given to load_config, into Database.secret; an unset
variable is an error only for the commands that need the password (Database.missing_password).
"""
from __future__ import annotations

import re

from . import rules
from .model import Database, Host
from .reader import Ini, Key, Problem, Section, boolean, checked, choice, duration, host, whole

MAX_LOCK_TIMEOUT = 31536000  # a year: MySQL's own maximum of lock_wait_timeout
MAX_LOCK_RETRIES = 100
REFUSED = {"password": "never write a password in stages.ini; name an environment variable with password_env "
                       "(or an option_file / passfile on the host)"}
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")   # libpq's sslmode
# the password file of the other server engine: told what to write instead, by the section's engine
OTHER_PASSWORD_FILE = {
    ("postgresql", "option_file"): "is a MySQL option file; for PostgreSQL write passfile = libpq's password "
                                   "file on the hosts (e.g. ~/.pgpass), or password_env",
    ("mysql", "passfile"): "is libpq's password file (PostgreSQL); for MySQL write option_file = a MySQL option "
                           "file on the hosts (e.g. ~/.my.cnf), or password_env",
}


def backup_host(value: str, sec: Section) -> Host | None:
    """As written, else the first host of the first stage (in file order) whose database this is."""
    if value:
        return host(value)
    users = [n for n in sec.scope["stage_hosts"] if sec.ini.get(f"stage:{n}", "database") == sec.scope["database"]]
    return sec.scope["stage_hosts"][users[0]][0] if users else None


def sqlite_path(value: str, sec: Section) -> str:
    if not value:
        raise Problem("missing; engine = sqlite needs path = <database file on the host>")
    return value


def required(engine: str, kind: str):
    """name, user: needed by a server engine, and passed to its client, so checked by rules.py."""
    def parse(value: str, sec: Section) -> str:
        if not value:
            raise Problem(f"missing; engine = {engine} needs {kind} =")
        return checked(lambda v: rules.db_value_problem(kind, v, engine))(value, sec)
    return parse


def lock_timeout(value: str, sec: Section) -> int:
    seconds = duration(value, sec)
    if not 1 <= seconds <= MAX_LOCK_TIMEOUT:
        raise Problem(f"{value!r} is not between 1s and 365d; write e.g. 10s")
    return seconds


def lock_retries(value: str, sec: Section) -> int:
    retries = whole(0)(value, sec)
    if retries > MAX_LOCK_RETRIES:
        raise Problem(f"{retries} is more than {MAX_LOCK_RETRIES}; write e.g. 3")
    return retries


def password_env(value: str, sec: Section) -> str:
    """mysql: password_env or option_file (or both); postgresql: password_env or passfile, exactly one."""
    if "passfile" in sec.table:
        if value and sec.values["passfile"]:
            raise Problem("password_env and passfile are both set; keep one: the environment variable (the tool "
                          "writes a temporary password file on the hosts) or libpq's password file there")
        if not value and not sec.values["passfile"]:
            raise Problem("missing; name the environment variable holding the password "
                          "(or set passfile = libpq's password file on the hosts, e.g. ~/.pgpass)")
    elif not value and not sec.values["option_file"]:
        raise Problem("missing; name the environment variable holding the password "
                      "(or set option_file = a MySQL option file on the host)")
    if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise Problem(f"{value!r} is not an environment variable name")
    return value


def sslmode(value: str, sec: Section) -> str:
    if value and value not in SSLMODES:
        raise Problem(f"{value!r} is not one of libpq's sslmodes: {' | '.join(SSLMODES)}")
    return value


def missing_password(ini: Ini, section: str, env: str) -> str:
    """The error of a command that needs this database's password when its variable is not set ("": set).
    Only such a command fails on it: `doit status` and `doit list` run without the variable."""
    if not env or env in ini.environ:
        return ""
    return ini.message(section, "password_env", f"environment variable {env} is not set; export it before running doit")


DATABASE: dict[str, Key] = {
    "backup_host": Key(backup_host, "", "where the dumps run and db_backup/ lives; default: the first host "
                                        "of the first stage using the database"),
    "restore_on_failed_migration": Key(boolean, "no", "yes: restore the pre-migration backup by itself"),
    "engine": Key(choice(("mysql", "postgresql", "sqlite"), "is not mysql, postgresql or sqlite"), "mysql",
                  "mysql | postgresql | sqlite"),
}
SQLITE: dict[str, Key] = {
    "path": Key(sqlite_path, "", "the database file on the backup host"),
}
MYSQL: dict[str, Key] = {
    "name": Key(required("mysql", "name"), "", "the schema", field="dbname"),
    "user": Key(required("mysql", "user"), "", "the user the app and the tool log in as"),
    "host": Key(checked(lambda v: rules.db_value_problem("host", v)), "127.0.0.1", "the server, as hosts see it"),
    "option_file": Key(checked(rules.host_file_problem), "", "a MySQL option file on the hosts (~/ allowed)"),
    "password_env": Key(password_env, "", "the environment variable holding the password"),
    "port": Key(whole(1), "3306", "the server's port"),
    "migration_lock_timeout": Key(lock_timeout, "10s", "production's migration waits at most this for a lock"),
    "migration_lock_retries": Key(lock_retries, "3", "then tries again this often, then stops naming the blocker"),
}
def pgpassfile_problem(value: str) -> str | None:
    """The app's libpq reads PGPASSFILE as written: it expands no ~ (only its default, ~/.pgpass, is found
    without PGPASSFILE). Refused at load, before anything touches a host, not when the env file is written."""
    if value.startswith("~/") and value != "~/.pgpass":
        return (f"{value!r}: libpq does not expand ~ in PGPASSFILE; write the file's absolute path on the "
                "hosts, or use ~/.pgpass (libpq's default)")
    return None


POSTGRESQL: dict[str, Key] = {
    "name": Key(required("postgresql", "name"), "", "the database", field="dbname"),
    "user": Key(required("postgresql", "user"), "", "the role the app and the tool log in as"),
    "host": Key(checked(lambda v: rules.db_value_problem("host", v)), "127.0.0.1", "the server, as hosts see it"),
    "passfile": Key(checked(lambda v: rules.host_file_problem(v) or pgpassfile_problem(v)), "",
                    "libpq's password file on the hosts: an absolute path, or ~/.pgpass (never read by the tool)"),
    "password_env": Key(password_env, "", "the environment variable holding the password"),
    "port": Key(whole(1), "5432", "the server's port"),
    "sslmode": Key(sslmode, "", "libpq's sslmode: disable | allow | prefer | require | verify-ca | verify-full"),
    "migration_lock_timeout": Key(lock_timeout, "10s", "production's migration waits at most this for a lock"),
    "migration_lock_retries": Key(lock_retries, "3", "then tries again this often, then stops naming the blocker"),
}
ENGINES = {"sqlite": SQLITE, "mysql": MYSQL, "postgresql": POSTGRESQL}
KEYS = {**DATABASE, **SQLITE, **MYSQL, **POSTGRESQL}


def read_database(ini: Ini, section: str, stage_hosts: dict[str, tuple[Host, ...]]) -> Database:
    ini.check_keys(section, KEYS, REFUSED)
    name = section.partition(":")[2]
    common = Section(ini, section, DATABASE, database=name, stage_hosts=stage_hosts).read()
    engine = common["engine"]
    if engine != "mysql":   # sqlite: a leftover server key before a missing path; postgresql: option_file named
        refuse_other_engines(ini, section, engine)   # before a missing password_env
    own = Section(ini, section, ENGINES[engine]).read()
    refuse_other_engines(ini, section, engine)   # mysql: what it needs first, then a leftover path
    env = own.get("password_env", "")
    return Database(name=name, secret=ini.environ.get(env, "") if env else "",
                    missing_password=missing_password(ini, section, env), **common, **own)


def refuse_other_engines(ini: Ini, section: str, engine: str) -> None:
    """The first key of another engine, in file order (as check_keys names an unknown key)."""
    for key in ini.cp[section]:
        if key not in DATABASE and key not in ENGINES[engine]:
            ini.fail(section, key, other_engine_problem(engine, key))


def other_engine_problem(engine: str, key: str) -> str:
    if (engine, key) in OTHER_PASSWORD_FILE:
        return OTHER_PASSWORD_FILE[(engine, key)]
    if engine == "sqlite":
        return "not used with engine = sqlite; remove it (sqlite takes only path)"
    owners = " or ".join(e for e, table in ENGINES.items() if key in table)
    return f"only for engine = {owners}; remove it"
