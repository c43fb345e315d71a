"""The config tests' stages.ini texts, all from the one template (tests/lab/stages_ini.py): LOCAL_INI (this
machine only, sqlite: the base every error case changes in one place) and its MySQL variants; and the
helpers that change a text line by line, write it and load it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from doit_stages.config import ConfigError, load_config
from tests.lab.stages_ini import LOCAL, LOCAL_INI, SQLITE, stages_ini

__all__ = ["LOCAL_INI", "mysql_ini", "pg_ini", "mysql_servers_ini", "write_ini", "line_of", "header", "in_section",
           "set_key", "config_error"]

# the test database on MariaDB, production's still sqlite (its password in BLOG_TEST_DB_PASSWORD)
MYSQL_TEST = {"database:test": {"engine": "mysql", "path": None, "host": "127.0.0.1", "name": "blog_test",
                                "user": "blog", "password_env": "BLOG_TEST_DB_PASSWORD"}}


def mysql_ini() -> str:
    """LOCAL_INI with the test database on MariaDB."""
    return stages_ini(SQLITE, LOCAL, MYSQL_TEST)


# the test database on PostgreSQL, production's still sqlite (its password in BLOG_TEST_DB_PASSWORD)
PG_TEST = {"database:test": {"engine": "postgresql", "path": None, "host": "127.0.0.1", "name": "blog_test",
                             "user": "blog", "password_env": "BLOG_TEST_DB_PASSWORD"}}


def pg_ini() -> str:
    """LOCAL_INI with the test database on PostgreSQL."""
    return stages_ini(SQLITE, LOCAL, PG_TEST)


# both databases on MariaDB, on servers the caller names; the stages on an SSH host (password: PW)
MYSQL_SERVERS = stages_ini(LOCAL, {
    "database:prod": {"host": "{prod_host}", "port": "{prod_port}", "name": "{prod_name}", "user": "blog",
                      "password_env": "PW", "+": None},
    "database:test": {"host": "{test_host}", "port": "3306", "name": "{test_name}", "user": "blog",
                      "password_env": "PW"},
    "stage:test": {"hosts": "ssh://deploy@web1:22", "link": None},
    "stage:staging": {"hosts": "ssh://deploy@web1:22", "link": None},
})


def mysql_servers_ini(prod_host="127.0.0.1", prod_port=3306, prod_name="blog_prod", test_host="127.0.0.1",
                      test_name="blog_test") -> str:
    return MYSQL_SERVERS.format(prod_host=prod_host, prod_port=prod_port, prod_name=prod_name,
                                test_host=test_host, test_name=test_name)


def write_ini(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    path = conf / "stages.ini"
    path.write_text(text)
    return path


def line_of(text: str, pattern: str, section: str | None = None) -> int:
    """1-based number of the first line matching pattern (a regex), within [section] if given."""
    current = None
    for no, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\[([^\]]+)\]", line)
        if m:
            current = m.group(1)
        if (section is None or current == section) and re.search(pattern, line):
            return no
    raise AssertionError(f"{pattern!r} not in the ini")


def header(text: str, section: str) -> int:
    """1-based number of the line [section]."""
    return text.splitlines().index(f"[{section}]") + 1


def in_section(text: str, section: str, add: str) -> str:
    """text with the line(s) `add` put at the end of [section]."""
    out, lines, inside = [], text.splitlines(), False
    for line in lines:
        if inside and line.startswith("["):
            while out and not out[-1].strip():
                out.pop()
            out += [add, ""]
            inside = False
        out.append(line)
        if line.strip() == f"[{section}]":
            inside = True
    if inside:
        out.append(add)
    assert add in out, f"no [{section}]"
    return "\n".join(out) + "\n"


def set_key(text: str, section: str, key: str, value: str | None) -> str:
    """text with `key = value` in [section] replaced (value None: the line removed)."""
    out, current, done = [], None, False
    for line in text.splitlines():
        m = re.match(r"^\[([^\]]+)\]", line)
        if m:
            current = m.group(1)
        if current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            done = True
            if value is not None:
                out.append(f"{key} = {value}")
            continue
        out.append(line)
    assert done, f"no {key} in [{section}]"
    return "\n".join(out) + "\n"


def config_error(tmp_path: Path, text: str, environ: dict | None = None) -> str:
    path = write_ini(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, f"not one line: {msg!r}"
    assert msg.startswith("stages.ini"), msg
    return msg
