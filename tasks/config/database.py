"""[database:<name>]: the keys of both engines, then those of its engine (SQLITE or MYSQL), each with its
parser, default and doc; read_database builds the Database.

A key of the other engine is refused, and so is `password` (a password never goes into stages.ini). The
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
                       "(or an option_file on the host)"}
# what a key of the other engine is told, by the section's engine
OTHER_ENGINE = {"sqlite": "not used with engine = sqlite; remove it (sqlite takes only path)",
                "mysql": "only for engine = sqlite; remove it"}


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


def required(kind: str):
    """name, user: needed by mysql, and passed to its client, so checked by rules.py."""
    def parse(value: str, sec: Section) -> str:
        if not value:
            raise Problem(f"missing; engine = mysql needs {kind} =")
        return checked(lambda v: rules.db_value_problem(kind, v))(value, sec)
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
    if not value and not sec.values["option_file"]:
        raise Problem("missing; name the environment variable holding the password "
                      "(or set option_file = a MySQL option file on the host)")
    if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise Problem(f"{value!r} is not an environment variable name")
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
    "engine": Key(choice(("mysql", "sqlite"), "is not mysql or sqlite"), "mysql", "mysql | sqlite"),
}
SQLITE: dict[str, Key] = {
    "path": Key(sqlite_path, "", "the database file on the backup host"),
}
MYSQL: dict[str, Key] = {
    "name": Key(required("name"), "", "the schema", field="dbname"),
    "user": Key(required("user"), "", "the user the app and the tool log in as"),
    "host": Key(checked(lambda v: rules.db_value_problem("host", v)), "127.0.0.1", "the server, as hosts see it"),
    "option_file": Key(checked(rules.option_file_problem), "", "a MySQL option file on the hosts (~/ allowed)"),
    "password_env": Key(password_env, "", "the environment variable holding the password"),
    "port": Key(whole(1), "3306", "the server's port"),
    "migration_lock_timeout": Key(lock_timeout, "10s", "production's migration waits at most this for a lock"),
    "migration_lock_retries": Key(lock_retries, "3", "then tries again this often, then stops naming the blocker"),
}
ENGINES = {"sqlite": SQLITE, "mysql": MYSQL}
KEYS = {**DATABASE, **SQLITE, **MYSQL}


def read_database(ini: Ini, section: str, stage_hosts: dict[str, tuple[Host, ...]]) -> Database:
    ini.check_keys(section, KEYS, REFUSED)
    name = section.partition(":")[2]
    common = Section(ini, section, DATABASE, database=name, stage_hosts=stage_hosts).read()
    engine = common["engine"]
    if engine == "sqlite":   # sqlite takes only path: a leftover mysql key is named before a missing path
        refuse_other_engines(ini, section, engine)
    own = Section(ini, section, ENGINES[engine]).read()
    refuse_other_engines(ini, section, engine)   # mysql: what it needs first, then a leftover path
    env = own.get("password_env", "")
    return Database(name=name, secret=ini.environ.get(env, "") if env else "",
                    missing_password=missing_password(ini, section, env), **common, **own)


def refuse_other_engines(ini: Ini, section: str, engine: str) -> None:
    """The first key of another engine, in file order (as check_keys names an unknown key)."""
    others = {k for other, table in ENGINES.items() if other != engine for k in table}
    for key in ini.cp[section]:
        if key in others:
            ini.fail(section, key, OTHER_ENGINE[engine])
