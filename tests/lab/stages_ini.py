"""The one stages.ini of the tests: the blog (examples/blog) in three stages, test -> staging -> prod, on
MariaDB with password_env, as tests/integration drives it on two sshd hosts. Every other stages.ini a test
writes is this one changed, in the open:

    INI = stages_ini()                                     the blog as it is
    stages_ini(option_files(prod, test))                   the passwords in option files on the hosts
    stages_ini(CODE_ONLY, {"project": {"build": "none"}})  one code-only stage test, no database
    stages_ini(CODE_ONLY, THIS_MACHINE)                    ... on this machine
    stages_ini(SQLITE)                                     sqlite databases on the backup host
    stages_ini(POSTGRESQL)                                 both databases on PostgreSQL
    LOCAL_INI = stages_ini(SQLITE, LOCAL)                  this machine only: the config tests' base

A change maps a section to None (dropped) or to keys; a key to None (dropped) or to its value (set in
place, or added at the section's end; a new section goes last). A value may hold `{placeholders}` that
Project.write (tests/lab/project.py) or str.format fills in; the key `+` is a raw line at the section's
end (the keys a test adds for a while: `{project_extra}`, `{prod_extra}`, `{prod_stage_extra}`)."""
from __future__ import annotations

from typing import Mapping

Change = Mapping[str, "Mapping[str, str | None] | None"]

BLOG: dict[str, dict[str, str]] = {
    "project": {
        "name": "blog",
        "source": "{source}",
        "deploy_root": "/srv/blog",
        "build": "pip",
        "build_command": "python manage.py collectstatic --noinput",
        "keep_releases": "3",
        "backup_max_age": "{max_age}",
        "ssh_config": "{ssh_config}",
        "shared_dirs": "media",
        "stage_dirs": "cache",
        "+": "{project_extra}",
    },
    "database:prod": {
        "engine": "mysql",
        "host": "127.0.0.1",
        "port": "3306",
        "name": "{prod_db}",
        "user": "{user}",
        "password_env": "{password_env}",
        "+": "{prod_extra}",
    },
    "database:test": {
        "engine": "mysql",
        "host": "127.0.0.1",
        "name": "{test_db}",
        "user": "{user}",
        "password_env": "{password_env}",
    },
    "stage:test": {
        "hosts": "{test_hosts}",
        "settings": "blog.settings.test",
        "database": "test",
        "restore_from": "prod",
    },
    "stage:staging": {
        "hosts": "{hosts}",
        "link": "sites/staging",
        "settings": "blog.settings.prod",
        "database": "prod",
        "promote_from": "test",
    },
    "stage:prod": {
        "hosts": "{hosts}",
        "link": "sites/current",
        "settings": "blog.settings.prod",
        "database": "prod",
        "promote_from": "staging",
        "+": "{prod_stage_extra}",
    },
}


def option_files(prod: str, test: str) -> Change:
    """Each database's password in a MySQL option file on the hosts (prod's at `prod`, test's at `test`, as
    written in stages.ini: '~/...' is the login's home) instead of password_env."""
    return {"database:prod": {"password_env": None, "option_file": prod},
            "database:test": {"password_env": None, "option_file": test}}


# both databases on PostgreSQL (tests/lab/postgres.py's server), the password still in password_env
POSTGRESQL: Change = {
    "database:prod": {"engine": "postgresql", "port": "5432"},
    "database:test": {"engine": "postgresql", "port": "5432"},
}


# one stage, test, that ships code only: no database, no build_command, no shared or stage dirs
CODE_ONLY: Change = {
    "project": {"build_command": None, "keep_releases": None, "backup_max_age": None, "shared_dirs": None,
                "stage_dirs": None},
    "database:prod": None,
    "database:test": None,
    "stage:test": {"settings": None, "database": None, "restore_from": None},
    "stage:staging": None,
    "stage:prod": None,
}

# with CODE_ONLY: that stage on this machine (hosts = local), nothing built, nothing to fill in
THIS_MACHINE: Change = {"project": {"build": "none", "ssh_config": None, "+": None}, "stage:test": {"hosts": "local"}}

# sqlite databases (files on the backup host) instead of MariaDB
SQLITE: Change = {
    "database:prod": {"host": None, "port": None, "name": None, "user": None, "password_env": None, "+": None,
                      "engine": "sqlite", "path": "/srv/blog/db/prod.sqlite3"},
    "database:test": {"host": None, "name": None, "user": None, "password_env": None,
                      "engine": "sqlite", "path": "/srv/blog/db/test.sqlite3"},
}

# with SQLITE: test and staging on this machine (hosts = local), no build: nothing to fill in
LOCAL: Change = {
    "project": {"source": "../blog", "build": "none", "build_command": None, "keep_releases": None,
                "backup_max_age": None, "ssh_config": None, "shared_dirs": None, "stage_dirs": None, "+": None},
    "stage:test": {"hosts": "local", "link": "sites/test"},
    "stage:staging": {"hosts": "local"},
    "stage:prod": None,
}


def stages_ini(*changes: Change) -> str:
    """BLOG with each change applied in turn, as the text of a stages.ini."""
    sections = {name: dict(keys) for name, keys in BLOG.items()}
    for change in changes:
        for name, keys in change.items():
            if keys is None:
                sections.pop(name, None)
                continue
            section = sections.setdefault(name, {})
            for key, value in keys.items():
                if value is None:
                    section.pop(key, None)
                else:
                    section[key] = value
    return "\n".join(f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items() if key != "+")
                     + (f"{keys['+']}\n" if "+" in keys else "") for name, keys in sections.items())


INI = stages_ini()
LOCAL_INI = stages_ini(SQLITE, LOCAL)
