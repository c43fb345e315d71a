"""The sample app's option-file reader (examples/blog/blog/dburl.py) agrees with MariaDB's own reader
(my_print_defaults, the code mysqldump and mysql use) on the values a user's option file may hold."""
from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from tests.lab.common import NASTY_PASSWORD
from tests.lab.mariadb import write_option_file

DBURL = Path(__file__).resolve().parents[2] / "examples" / "blog" / "blog" / "dburl.py"
_spec = importlib.util.spec_from_file_location("blog_dburl", DBURL)
dburl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dburl)

LINES = [
    'password = "p w;$(x)`id`\'#\\\\x"',            # quoted: '#', quotes, backslash pairs
    "password=plain#comment after",
    "password = 'single \"# kept\"'   # and a comment",
    r"password = a\sb\tc\\d\x\'e",                    # escapes decoded, \x kept
    "password =   spaces around   ",
    'password = "unbalanced',
    "password = 'mixed\"",
    'password = "a"b"',                               # first == last quote: one pair stripped
    "password = trailing\\",
    "password = x=y=z",
    "password =",
    '   password = "leading spaces before the key"',
]


def mariadb_reads(path: Path) -> dict[str, str]:
    out = subprocess.run(["my_print_defaults", f"--defaults-file={path}", "client"], capture_output=True,
                         text=True, check=True).stdout
    opts = {}
    for line in out.splitlines():
        key, _, value = line[2:].partition("=")
        opts[key] = value
    return opts


@pytest.mark.parametrize("line", LINES)
def test_reader_matches_mariadb(tmp_path, line):
    path = tmp_path / "my.cnf"
    path.write_text(f"# a comment\n[mysqldump]\npassword=not this one\n[client]\nuser = blog\n{line}\n[mysql]\nx=1\n")
    path.chmod(0o600)
    assert dburl.read_option_file(path) == mariadb_reads(path)


def test_reader_reads_what_the_harness_writes_for_the_tools(tmp_path):
    path = write_option_file(tmp_path / "my.cnf", "blog", NASTY_PASSWORD)
    opts = dburl.read_option_file(path)
    assert opts["password"] == NASTY_PASSWORD and opts["user"] == "blog"
    assert opts == mariadb_reads(path)


def test_include_is_followed(tmp_path):
    inner = write_option_file(tmp_path / "inner.cnf", "blog", NASTY_PASSWORD)
    outer = tmp_path / "outer.cnf"
    outer.write_text(f"[client]\nhost=db1\n!include {inner}\n")
    outer.chmod(0o600)
    assert dburl.read_option_file(outer)["password"] == NASTY_PASSWORD
    assert dburl.read_option_file(outer) == mariadb_reads(outer)
