"""tasks/engines/base.py and mysql.py on plain inputs: row counts read and compared, the client option file written
(read back by MariaDB's own reader: tests/integration/test_db.py)."""
from __future__ import annotations

import pytest

from doit_stages.engines.base import counts_mismatch, parse_row_counts
from doit_stages.engines.mysql import option_file
from tests.lab.configs import mysql_db


def test_parse_row_counts():
    text = "auth_user\t3\nposts_post\t10\n\nmy table\t0\n"
    assert parse_row_counts(text) == {"auth_user": 3, "posts_post": 10, "my table": 0}
    assert parse_row_counts("") == {}


@pytest.mark.parametrize("bad", ["auth_user 3", "auth_user\t-1", "auth_user\tNULL", "\t4", "auth_user\t3\tx"])
def test_parse_row_counts_refuses_a_bad_line(bad):
    with pytest.raises(ValueError) as info:
        parse_row_counts(f"ok\t1\n{bad}\n")
    assert repr(bad) in str(info.value)


def test_counts_match_exactly_without_after():
    assert counts_mismatch({"a": 1, "b": 2}, None, {"a": 1, "b": 2}) == []
    assert counts_mismatch({"a": 1}, None, {"a": 2}) == ["a: 2 rows, backup has 1"]


@pytest.mark.parametrize("actual, problems", [
    (10, []), (11, []), (12, []),
    (9, ["a: 9 rows, backup has 10"]),
    (13, ["a: 13 rows, backup has 10"]),
])
def test_counts_between_before_and_after(actual, problems):
    assert counts_mismatch({"a": 10}, {"a": 12}, {"a": actual}) == problems
    # rows deleted while dumping: the range is the other way round
    assert counts_mismatch({"a": 12}, {"a": 10}, {"a": actual}) == [p.replace("has 10", "has 12") for p in problems]


def test_counts_missing_and_extra_tables():
    before = {"a": 1, "b": 2}
    assert counts_mismatch(before, before, {"a": 1}) == ["b: missing"]
    assert counts_mismatch(before, before, {"a": 1, "b": 2, "c": 0}) == ["c: not in the backup"]
    # a table created while dumping may be there, empty
    assert counts_mismatch({"a": 1}, {"a": 1, "n": 0}, {"a": 1, "n": 0}) == []


def test_option_file_plain(monkeypatch):
    monkeypatch.setenv("DST_PURE_PW", "secret")
    assert option_file(mysql_db()) == (b'[client]\nhost="db.example"\nport=3307\nuser="blog"\npassword="secret"\n')


def test_option_file_without_password_env_has_no_password_line():
    text = option_file(mysql_db(password_env="", option_file="~/.my.cnf")).decode()
    assert "password" not in text and text.startswith("[client]\n")


@pytest.mark.parametrize("brk", ["\n", "\r"])
def test_option_file_refuses_a_line_break(monkeypatch, brk):
    monkeypatch.setenv("DST_PURE_PW", f"top{brk}secret")
    with pytest.raises(ValueError) as info:
        option_file(mysql_db())
    msg = str(info.value)
    assert "line break" in msg and "DST_PURE_PW" in msg and "[database:prod]" in msg
    assert "secret" not in msg


def test_access_denied_names_the_key_that_supplies_the_password():
    from doit_stages.config import Database
    from doit_stages.engines.mysql import access_denied
    env = Database(name="prod", engine="mysql", dbname="blog", user="blog", password_env="BLOG_PROD_DB_PASSWORD")
    cnf = Database(name="prod", engine="mysql", dbname="blog", user="blog", option_file="~/.my.cnf")
    client = "ERROR 1045 (28000): Access denied for user 'blog'@'localhost' (using password: YES)\n"
    dump = ('mysqldump: Got error: 1045: "Access denied for user \'blog\'@\'10.0.0.5\' (using password: YES)" '
            "when trying to connect")
    driver = "mysql.connector.errors.ProgrammingError: 1045 (28000): Access denied for user 'blog'@'localhost' " \
             "(using password: NO)"
    assert access_denied(env, client) == (
        "[database:prod] 127.0.0.1:3306 refused the login of user 'blog'@'localhost' (Access denied): the password "
        "comes from $BLOG_PROD_DB_PASSWORD ([database:prod] password_env); export that user's password in "
        "BLOG_PROD_DB_PASSWORD, or fix [database:prod] user")
    assert "'blog'@'10.0.0.5'" in access_denied(env, dump)
    assert "with no password: the variable is empty" in access_denied(env, driver)
    assert "[database:prod] option_file = ~/.my.cnf" in access_denied(cnf, client)
    grant = access_denied(env, "ERROR 1044 (42000): Access denied for user 'blog'@'%' to database 'blog_prod'")
    assert "refused it database 'blog_prod'" in grant and "grant" in grant and "password" not in grant
    assert access_denied(env, "ERROR 2002 (HY000): Can't connect to MySQL server") is None
