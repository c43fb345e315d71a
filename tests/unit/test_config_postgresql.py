"""[database:<name>] engine = postgresql: its keys, what it refuses (a key of another engine, MySQL's
option_file, both or neither of password_env and passfile) and the identity check of restore targets.
Plain files in tmp dirs; no host or server touched."""
from __future__ import annotations

import pytest

from doit_stages.config import load_config, rules
from tests.lab.stages_ini import LOCAL, stages_ini
from tests.unit.inifile import LOCAL_INI, config_error, in_section, line_of, pg_ini, set_key, write_ini

ENV = {"BLOG_TEST_DB_PASSWORD": "t:e\\st"}

# both databases on PostgreSQL servers the caller names; the stages on an SSH host (password: PW)
PG_SERVERS = stages_ini(LOCAL, {
    "database:prod": {"engine": "postgresql", "host": "{prod_host}", "port": "{prod_port}", "name": "{prod_name}",
                      "user": "blog", "password_env": "PW", "+": None},
    "database:test": {"engine": "postgresql", "host": "{test_host}", "port": "5432", "name": "{test_name}",
                      "user": "blog", "password_env": "PW"},
    "stage:test": {"hosts": "ssh://deploy@web1:22", "link": None},
    "stage:staging": {"hosts": "ssh://deploy@web1:22", "link": None},
})


def pg_servers_ini(prod_host="127.0.0.1", prod_port=5432, prod_name="blog_prod", test_host="127.0.0.1",
                   test_name="blog_test") -> str:
    return PG_SERVERS.format(prod_host=prod_host, prod_port=prod_port, prod_name=prod_name,
                             test_host=test_host, test_name=test_name, path="")


def load(tmp_path, text: str, environ: dict | None = None):
    return load_config(write_ini(tmp_path, text), environ=ENV if environ is None else environ)


def test_a_postgresql_database_with_its_defaults(tmp_path):
    db = load(tmp_path, pg_ini()).databases["test"]
    assert (db.engine, db.host, db.port, db.dbname, db.user) == ("postgresql", "127.0.0.1", 5432, "blog_test", "blog")
    assert (db.password_env, db.passfile, db.sslmode, db.option_file) == ("BLOG_TEST_DB_PASSWORD", "", "", "")
    assert (db.migration_lock_timeout, db.migration_lock_retries) == (10, 3)
    assert db.password() == "t:e\\st" and "t:e" not in repr(db)


def test_passfile_instead_of_password_env(tmp_path):
    text = set_key(pg_ini(), "database:test", "password_env", None)
    db = load(tmp_path, in_section(text, "database:test", "passfile = ~/.pgpass"), {}).databases["test"]
    assert (db.passfile, db.password_env, db.password()) == ("~/.pgpass", "", "")


def test_both_password_env_and_passfile_are_refused(tmp_path):
    text = in_section(pg_ini(), "database:test", "passfile = /etc/blog/pgpass")
    msg = config_error(tmp_path, text, ENV)
    line = line_of(text, "^password_env =", "database:test")
    assert msg.startswith(f"stages.ini:{line}: [database:test] password_env: password_env and passfile are both "
                          "set; keep one"), msg


def test_neither_password_env_nor_passfile_is_refused(tmp_path):
    msg = config_error(tmp_path, set_key(pg_ini(), "database:test", "password_env", None))
    assert "[database:test] password_env: missing; " in msg and "passfile = libpq's password file" in msg
    assert "option_file" not in msg


def test_option_file_is_refused_naming_passfile(tmp_path):
    text = in_section(set_key(pg_ini(), "database:test", "password_env", None), "database:test",
                      "option_file = ~/.my.cnf")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^option_file =")
    assert msg == (f"stages.ini:{line}: [database:test] option_file: is a MySQL option file; for PostgreSQL write "
                   "passfile = libpq's password file on the hosts (e.g. ~/.pgpass), or password_env")


def test_passfile_in_a_mysql_section_is_refused_naming_option_file(tmp_path):
    text = in_section(set_key(pg_ini(), "database:test", "engine", "mysql"), "database:test", "passfile = ~/.pgpass")
    msg = config_error(tmp_path, text, ENV)
    assert f":{line_of(text, '^passfile =')}: [database:test] passfile: is libpq's password file (PostgreSQL); " \
           "for MySQL write option_file = " in msg, msg


@pytest.mark.parametrize("key, value", [("sslmode", "require"), ("passfile", "~/.pgpass")])
def test_postgresql_keys_in_a_sqlite_section_are_refused(tmp_path, key, value):
    msg = config_error(tmp_path, in_section(LOCAL_INI, "database:prod", f"{key} = {value}"))
    assert f"[database:prod] {key}: not used with engine = sqlite; remove it (sqlite takes only path)" in msg


def test_sslmode_in_a_mysql_section_and_path_in_a_postgresql_one_are_refused(tmp_path):
    text = in_section(set_key(pg_ini(), "database:test", "engine", "mysql"), "database:test", "sslmode = require")
    assert "[database:test] sslmode: only for engine = postgresql; remove it" in config_error(tmp_path, text, ENV)
    text = in_section(pg_ini(), "database:test", "path = /srv/x.sqlite3")
    assert "[database:test] path: only for engine = sqlite; remove it" in config_error(tmp_path, text, ENV)


@pytest.mark.parametrize("value", ["required", "VERIFY-FULL", "off"])
def test_an_unknown_sslmode_is_refused(tmp_path, value):
    msg = config_error(tmp_path, in_section(pg_ini(), "database:test", f"sslmode = {value}"), ENV)
    assert f"[database:test] sslmode: {value!r} is not one of libpq's sslmodes: disable | allow | prefer" in msg


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_every_sslmode_of_libpq_is_accepted(tmp_path, mode):
    assert load(tmp_path, in_section(pg_ini(), "database:test", f"sslmode = {mode}")).databases["test"].sslmode == mode


@pytest.mark.parametrize("value", ["relative/pgpass", "-x", "/etc/../root/.pgpass", "~/a b/../c", "~user/.pgpass"])
def test_a_bad_passfile_is_refused(tmp_path, value):
    text = in_section(set_key(pg_ini(), "database:test", "password_env", None), "database:test", f"passfile = {value}")
    assert "[database:test] passfile: " in config_error(tmp_path, text)


@pytest.mark.parametrize("key, value", [("name", "-e"), ("name", "blog'x"), ("name", "b" * 64), ("user", "-ublog"),
                                        ("user", "u" * 64), ("user", "blo g"), ("host", "-hevil"),
                                        ("host", "db;x"), ("host", "/var/run/postgresql")])
def test_values_that_reach_the_client_are_checked(tmp_path, key, value):
    msg = config_error(tmp_path, set_key(pg_servers_ini(), "database:prod", key, value), {"PW": "x"})
    assert f"[database:prod] {key}: " in msg, msg


def test_a_name_of_63_characters_is_accepted(tmp_path):
    cfg = load(tmp_path, set_key(pg_servers_ini(), "database:prod", "name", "b" * 63), {"PW": "x"})
    assert cfg.databases["prod"].dbname == "b" * 63


def test_missing_name_says_postgresql(tmp_path):
    msg = config_error(tmp_path, set_key(pg_ini(), "database:test", "name", None), ENV)
    assert "[database:test] name: missing; engine = postgresql needs name =" in msg


def test_an_unset_password_variable_fails_only_the_commands_that_need_it(tmp_path):
    cfg = load(tmp_path, pg_ini(), {})
    with pytest.raises(Exception, match=r"\[database:test\] password_env: environment variable "
                                        r"BLOG_TEST_DB_PASSWORD is not set"):
        cfg.require_passwords(["test"])


# -- the test database can be production -------------------------------------------------------------------
@pytest.mark.parametrize("test_host", ["127.0.0.1", "localhost", "LOCALHOST", "127.0.0.2", "::1"])
def test_a_test_database_that_is_production_is_refused(tmp_path, test_host):
    text = pg_servers_ini(test_host=test_host, test_name="blog_prod")
    msg = config_error(tmp_path, text, {"PW": "x"})
    line = line_of(text, "^name = blog_prod", "database:test")
    assert msg.startswith(f"stages.ini:{line}: [database:test] name: blog_prod on {test_host}:5432 is the same "
                          "database as [database:prod]"), msg
    assert "restore:test would drop it" in msg


def test_same_database_name_on_another_server_or_port_is_accepted(tmp_path):
    for ini in (pg_servers_ini(test_name="blog_prod", prod_host="db1.example.org"),
                pg_servers_ini(test_name="blog_prod", prod_port=5433)):
        load(tmp_path, ini, {"PW": "x"})


def test_the_same_server_named_with_another_engine_is_still_the_same_database(tmp_path):
    """One port serves one server: a section that calls it mysql is a mistake, never a second database."""
    text = set_key(pg_servers_ini(test_name="Blog_Prod"), "database:test", "engine", "mysql")
    msg = config_error(tmp_path, text, {"PW": "x"})
    assert "[database:test] name: Blog_Prod on 127.0.0.1:5432 is the same database as [database:prod]" in msg


def test_identity_of_server_databases():
    same = rules.database_identity("postgresql", "localhost", 5432, "blog", "", "")
    assert same == rules.database_identity("postgresql", "127.0.0.1", 5432, "BLOG", "", "")
    assert same == rules.database_identity("mysql", "::1", 5432, "blog", "", "")
    assert same != rules.database_identity("postgresql", "127.0.0.1", 5433, "blog", "", "")


@pytest.mark.parametrize("value, ok", [("~/.pgpass", True), ("/etc/blog/pgpass", True), ("~/blog.pgpass", False)])
def test_passfile_other_than_libpqs_default_under_home_is_refused_at_load(tmp_path, value, ok):
    """The app's libpq reads PGPASSFILE as written (no ~): refused before any host is touched."""
    text = in_section(set_key(pg_ini(), "database:test", "password_env", None), "database:test", f"passfile = {value}")
    if ok:
        assert load(tmp_path, text, {}).databases["test"].passfile == value
        return
    msg = config_error(tmp_path, text, {})
    line = line_of(text, "^passfile =", "database:test")
    assert msg.startswith(f"stages.ini:{line}: [database:test] passfile: '~/blog.pgpass': libpq does not expand ~ "
                          "in PGPASSFILE; write the file's absolute path on the hosts, or use ~/.pgpass"), msg
