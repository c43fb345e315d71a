"""The PostgreSQL lab (tests/lab/postgres.py) against the real server, and what tasks/engines/pg_sql.py hands
libpq's tools: a role whose password is full of shell metacharacters, quotes, ':' and '\\' logs in through
psycopg with it (and not without it), and psql / pg_dump on this machine reach its database through a
password file holding pg_sql.pgpass_line — the escaping as libpq itself reads it. The SQL of pg_sql (row
counts, the server's identity, who blocks a lock) runs through psql and its parsers read the answers."""
from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time

import psycopg
import pytest

from doit_stages.config import Database
from doit_stages.engines import pg_sql
from tests.lab.common import NASTY_PASSWORD
from tests.lab.postgres import write_passfile

# shell metacharacters, both quotes, '#', backslashes and the password file's own separator ':'
PASSWORD = NASTY_PASSWORD + ":\\:*: end \\"


@pytest.fixture
def pg_role(postgres):
    """(role, database): a fresh role with PASSWORD owning a fresh database with two tables; both dropped."""
    role = f"dst_{os.getpid()}_{secrets.token_hex(3)}"
    postgres.create_role(role, PASSWORD)
    postgres.create_database(role + "_db", owner=role)
    postgres.run_sql(role + "_db", "CREATE TABLE posts (id serial PRIMARY KEY, title text);"
                                   "INSERT INTO posts (title) SELECT 'p' || g FROM generate_series(1, 5) g;"
                                   "CREATE SCHEMA extra; CREATE TABLE extra.\"Odd name\" (x int);"
                                   "INSERT INTO extra.\"Odd name\" VALUES (1), (2);", user=role)
    yield role, role + "_db"
    postgres.drop_role(role)
    assert not postgres.database_exists(role + "_db")


def database(role: str, name: str, password: str = PASSWORD) -> Database:
    return Database(name="prod", engine="postgresql", dbname=name, user=role, host="127.0.0.1", port=5432,
                    password_env="PW", secret=password)


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)


def client(db: Database, passfile, sql: str) -> subprocess.CompletedProcess:
    return run(pg_sql.env_argv(pg_sql.client_env(db, str(passfile)), pg_sql.psql_argv(sql)))


def test_a_role_logs_in_with_its_nasty_password_and_not_without(postgres, pg_role):
    role, name = pg_role
    with postgres.connect(name, user=role, password=PASSWORD) as con:
        assert con.execute("SELECT current_user, count(*) FROM posts").fetchone() == (role, 5)
    for wrong in ("", PASSWORD[:-1], "p w"):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed|no password"):
            postgres.connect(name, user=role, password=wrong).close()
    assert postgres.tables(name) == ["extra.Odd name", "posts"]
    assert postgres.row_counts(name) == {"extra.Odd name": 2, "posts": 5}


def test_psql_and_pg_dump_log_in_through_the_pgpass_line(postgres, pg_role, tmp_path):
    role, name = pg_role
    db = database(role, name)
    passfile = write_passfile(tmp_path / "pgpass", pg_sql.pgpass_line(db))
    assert oct(passfile.stat().st_mode & 0o777) == "0o600"
    counts = client(db, passfile, pg_sql.ROW_COUNTS)
    assert counts.returncode == 0, counts.stderr
    assert pg_sql.parse_row_counts(counts.stdout) == postgres.row_counts(name) == {"extra.Odd name": 2, "posts": 5}
    dump = run(pg_sql.env_argv(pg_sql.client_env(db, str(passfile)), ["pg_dump", "--no-owner"]))
    assert dump.returncode == 0, dump.stderr
    assert "CREATE TABLE public.posts" in dump.stdout and "-- PostgreSQL database dump complete" in dump.stdout
    assert PASSWORD not in dump.stdout + dump.stderr


def test_an_unescaped_password_file_is_refused_and_read_as_a_one_line_hint(pg_role, tmp_path):
    """The escaping matters: the raw password in the file does not log in (the test above can fail)."""
    role, name = pg_role
    db = database(role, name)
    raw = write_passfile(tmp_path / "raw", f"127.0.0.1:5432:{name}:{role}:{PASSWORD}")
    out = client(db, raw, "SELECT 1")
    assert out.returncode != 0 and "password authentication failed" in out.stderr
    hint = pg_sql.access_denied(db, out.stderr)
    assert hint == (f"[database:prod] 127.0.0.1:5432 refused the password of role {role}: the password comes from "
                    f"$PW ([database:prod] password_env); export the password of role {role} in PW, or fix "
                    "[database:prod] user")
    missing = client(database(role, name + "_gone"), write_passfile(tmp_path / "gone", pg_sql.pgpass_line(
        database(role, name + "_gone"))), "SELECT 1")
    assert pg_sql.access_denied(database(role, name + "_gone"), missing.stderr).startswith(
        f"[database:prod] 127.0.0.1:5432 has no database {name}_gone: create it owned by {role}")


def test_the_server_identity_is_what_the_server_says(postgres, pg_role, tmp_path):
    role, name = pg_role
    db = database(role, name)
    out = client(db, write_passfile(tmp_path / "pgpass", pg_sql.pgpass_line(db)), pg_sql.SERVER_IDENTITY)
    assert out.returncode == 0, out.stderr
    system, addr, port, oid, dbname = pg_sql.parse_server_identity(out.stdout)
    assert (system, oid) == postgres.query(name, "SELECT (SELECT system_identifier FROM pg_control_system()), "
                                                 "oid FROM pg_database WHERE datname = %s", (name,))[0]
    assert (addr, port, dbname) == ("127.0.0.1", 5432, name)


def wait_for_lock_wait(postgres, name: str, deadline: float = 30) -> None:
    """Until a session of the tool in `name` waits for a lock (a state, not a time: polled)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if postgres.query(name, "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                                "AND application_name LIKE 'doit-stages%%'", (name,)):
            return
        time.sleep(0.05)
    raise AssertionError("the migration's session never waited for its lock")


def test_blockers_names_the_session_holding_the_migrations_lock(postgres, pg_role, tmp_path):
    role, name = pg_role
    db = database(role, name)
    passfile = write_passfile(tmp_path / "pgpass", pg_sql.pgpass_line(db))
    holder = postgres.connect(name, user=role, password=PASSWORD, application_name="gunicorn", autocommit=False)
    holder.execute("SELECT title FROM posts WHERE id = 1")   # idle in transaction, holding posts
    holder_pid = holder.info.backend_pid
    waiter = postgres.connect(name, user=role, password=PASSWORD, application_name="doit-stages-migrate")
    failed = []

    def migrate():
        try:
            waiter.execute("SET lock_timeout = '60s'")
            waiter.execute("ALTER TABLE posts ADD COLUMN extra int")
        except psycopg.Error as e:
            failed.append(e)
    thread = threading.Thread(target=migrate)
    thread.start()
    try:
        wait_for_lock_wait(postgres, name)
        out = client(db, passfile, pg_sql.BLOCKERS)
        assert out.returncode == 0, out.stderr
        line = pg_sql.describe_blockers(out.stdout)
        assert line.startswith(f"pid {holder_pid} (user {role}, application 'gunicorn', idle in transaction, "
                               "query started "), line
        assert line.endswith(" holding posts: SELECT title FROM posts WHERE id = 1"), line
        waiter.cancel_safe()
        thread.join()
        assert failed, "the ALTER did not wait"
        after = client(db, passfile, pg_sql.blockers_sql(["posts", "no_such_table"]))   # the wait gave up
        assert pg_sql.describe_blockers(after.stdout).startswith(f"pid {holder_pid} (user {role}")
    finally:
        thread.join()
        holder.close()
        waiter.close()
    assert client(db, passfile, pg_sql.BLOCKERS).stdout == ""
