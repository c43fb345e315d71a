"""tasks/engines/postgresql.py on plain inputs: what the app gets (DATABASE_URL, PGPASSFILE), the tool's
password file, a restore's refusals and failures told as one line naming the key, the server's identity in
words, and the rehearsal without a probe. (The engine against the real server: tests/integration/
test_backup_restore.py.)"""
from __future__ import annotations

import pytest

from doit_stages.config import Database
from doit_stages.engines import engine_for, pg_sql
from doit_stages.engines.postgresql import LoadFailed, load_failed, password_file
from doit_stages.errors import StepError
from doit_stages.hostside import rehearsal_probe_pg
from doit_stages.transport import CommandFailed
from tests.lab.common import NASTY_PASSWORD

PASSWORD = NASTY_PASSWORD + ":colon\\"
META = {"file": "blog-prod-x.sql.gz", "database": "prod", "sha256": "ab" * 32}


def pg(**kw) -> Database:
    args = dict(name="test", engine="postgresql", dbname="blog_test", host="db.example", port=5433, user="blog",
                password_env="PG_PW", secret=PASSWORD)
    args.update(kw)
    return Database(**args)


class Host:
    host = "web1"


def test_the_engine_is_registered_with_its_answers():
    e = engine_for(pg())
    assert (e.name, e.backup_ext, e.bounded_lock_waits, e.probe) == ("postgresql", ".sql.gz", True, rehearsal_probe_pg)
    assert e.backup_source(pg()) == "blog_test@db.example:5433"
    assert not e.reads_copy_on_host(pg()) and e.reads_copy_on_host(pg(password_env="", passfile="~/.pgpass"))


def test_app_env_with_password_env_and_with_passfile():
    e = engine_for(pg())
    assert e.app_env(pg()) == {"DATABASE_URL": pg_sql.database_url(pg())}
    assert "%3Acolon%5C" in e.app_env(pg())["DATABASE_URL"]
    absolute = pg(password_env="", secret="", passfile="/srv/blog/.pgpass")
    assert e.app_env(absolute) == {"DATABASE_URL": "postgres://blog@db.example:5433/blog_test",
                                   "PGPASSFILE": "/srv/blog/.pgpass"}
    default = pg(password_env="", secret="", passfile="~/.pgpass")               # libpq's own default
    assert e.app_env(default) == {"DATABASE_URL": "postgres://blog@db.example:5433/blog_test"}
    with pytest.raises(StepError) as info:
        e.app_env(pg(password_env="", secret="", passfile="~/pg/pass"))
    assert str(info.value) == ("[database:test] passfile = ~/pg/pass: the app's libpq does not expand ~ in "
                               "PGPASSFILE; write the file's absolute path, or use ~/.pgpass (libpq's default)")


def test_the_tools_password_file_has_the_database_and_the_maintenance_database():
    lines = password_file(pg()).decode().splitlines()
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    assert lines == [f"db.example:5433:blog_test:blog:{escaped}", f"db.example:5433:postgres:blog:{escaped}"]
    with pytest.raises(StepError, match=r"^\[database:test\] password_env: the password in \$PG_PW holds a line"):
        password_file(pg(secret="two\nlines"))


@pytest.mark.parametrize("text, expected", [
    ('psql:<stdin>:1: ERROR:  permission denied to create database (role blog lacks CREATEDB)',
     "[database:test] db.example:5433: role blog lacks CREATEDB, and a restore drops database blog_test and "
     "creates it again owned by that role: ALTER ROLE blog CREATEDB on the server, or fix [database:test] user"),
    ('ERROR:  must be owner of database blog_test',
     "[database:test] db.example:5433: role blog does not own database blog_test, and only its owner may drop it "
     "for a restore: ALTER DATABASE blog_test OWNER TO blog on the server, or fix [database:test] user or name"),
    ('ERROR:  permission denied to terminate process\nDETAIL:  Only roles with privileges of the role whose '
     'process is being terminated or with privileges of the "pg_signal_backend" role may terminate this process.',
     "[database:test] db.example:5433: sessions of another role use database blog_test, and role blog may not "
     "end them for the restore's DROP DATABASE ... WITH (FORCE): end them, or GRANT pg_signal_backend TO blog on "
     "the server"),
    ('psql: error: connection to server at "db.example", port 5433 failed: FATAL:  database "postgres" does not '
     'exist', "[database:test] db.example:5433 has no database postgres, where a restore drops and creates "
              "blog_test: create it on the server (CREATE DATABASE postgres)"),
    ("ERROR:  syntax error at or near \"x\"", None),
])
def test_a_restores_refusals_name_the_right_and_the_key(text, expected):
    assert pg_sql.restore_refusal(pg(), text) == expected


def failure(stderr: str, code: int = 3) -> CommandFailed:
    return CommandFailed("web1", ["env", "bash"], code, stderr)


def test_a_restore_failure_says_whether_the_database_was_changed():
    db = pg()
    damaged = load_failed(Host(), db, META, failure("sha256 12, the backup's metadata says ab", 5))
    assert isinstance(damaged, LoadFailed) and str(damaged) == (
        "web1: backup blog-prod-x.sql.gz is damaged (sha256 12, the backup's metadata says ab); test was not "
        "changed: take a new backup (doit backup:prod)")
    refused = load_failed(Host(), db, META, failure("psql:<stdin>:2: ERROR:  must be owner of database blog_test"))
    assert str(refused).startswith("web1: [database:test] db.example:5433: role blog does not own database")
    assert str(refused).endswith("; test was not changed")
    login = load_failed(Host(), db, META, failure('psql: error: connection to server at "db.example" failed: FATAL:  '
                                                  'password authentication failed for user "blog"', 2))
    assert str(login).startswith("web1: [database:test] db.example:5433 refused the password of role blog: ")
    assert str(login).endswith("; test was not changed") and PASSWORD not in str(login)
    late = load_failed(Host(), db, META, failure('psql:<stdin>:310: ERROR:  relation "x" already exists'))
    assert str(late) == ('web1: restore of blog-prod-x.sql.gz into test failed (psql:<stdin>:310: ERROR:  relation '
                         '"x" already exists); the database is not usable')


def test_the_servers_identity_in_words():
    e = engine_for(pg())
    assert e.describe_identity(("postgresql", 7716151930964375709, 16384, "blog_prod")) == (
        "database blog_prod (oid 16384) of the PostgreSQL server with system identifier 7716151930964375709")
