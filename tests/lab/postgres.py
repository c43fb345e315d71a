"""PostgreSQL: `Postgres()` talks to 127.0.0.1:5432 as postgres (trust on loopback) with psycopg 3: roles
with passwords, databases owned by them, SQL, tables and exact row counts. `write_passfile()` writes a libpq
password file for psql / pg_dump / pg_restore.

Trust lets any role in without its password, which would prove nothing about one: a role made here is a
member of PASSWORD_GROUP, and the server's pg_hba.conf has `host all +doit_stages_password 127.0.0.1/32
scram-sha-256` ahead of the trust line (./scripts/test puts it there), so such a role logs in with its
password or not at all."""
from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Sequence

from .common import HarnessError

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PASSWORD_GROUP = "doit_stages_password"
PASSWORD_RULE = f"host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    if not name or "\x00" in name:
        raise ValueError(f"bad identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def write_passfile(path: str | os.PathLike, *lines: str, owner: str | None = None) -> Path:
    """A libpq password file holding `lines` as given (already escaped: pg_sql.pgpass_line), mode 0600 from
    the start (libpq ignores a file that others may read)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.replace(tmp, path)
    return path


class Postgres:
    """The test server as its superuser, one connection a call (autocommit)."""

    def __init__(self, host: str = PG_HOST, port: int = PG_PORT, user: str = "postgres"):
        self.host, self.port, self.user = host, port, user

    def connect(self, database: str = "postgres", user: str | None = None, password: str | None = None,
                application_name: str = "doit-stages-lab", autocommit: bool = True):
        import psycopg
        kwargs = dict(host=self.host, port=self.port, dbname=database, user=user or self.user,
                      connect_timeout=5, application_name=application_name, autocommit=autocommit)
        if password is not None:
            kwargs["password"] = password
        return psycopg.connect(**kwargs)

    def ensure_running(self) -> str:
        """The server's version; a HarnessError saying what to run when it does not answer, or when roles of
        PASSWORD_GROUP would get in by trust."""
        try:
            version = self.version()
            rules = self.query("postgres", "SELECT line_number, user_name, auth_method FROM pg_hba_file_rules "
                                           "WHERE type = 'host' AND address = '127.0.0.1' ORDER BY line_number")
        except Exception as e:
            raise HarnessError(f"PostgreSQL does not answer at {self.host}:{self.port} as postgres by trust ({e}); "
                               "./scripts/test installs and starts it") from None
        first = next((r for r in rules if f"+{PASSWORD_GROUP}" in r[1] or "all" in r[1]), None)
        if not first or f"+{PASSWORD_GROUP}" not in first[1] or first[2] != "scram-sha-256":
            raise HarnessError(f"pg_hba.conf lacks `{PASSWORD_RULE}` ahead of its trust line (roles made by the "
                               "tests would log in without their password); ./scripts/test (as root) adds it")
        self.query("postgres", f"DO $$BEGIN CREATE ROLE {ident(PASSWORD_GROUP)} NOLOGIN; "
                               "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END$$")
        return version

    def version(self) -> str:
        return self.query("postgres", "SHOW server_version")[0][0]

    def query(self, db: str, sql: str, params: Sequence | dict | None = None) -> list[tuple]:
        """Run SQL in db (several statements when there are no params); the rows of the last result."""
        with self.connect(db) as con:
            cur = con.execute(sql, params)
            return cur.fetchall() if cur.description else []

    # -- roles and databases --------------------------------------------------------------------------
    def create_role(self, role: str, password: str) -> None:
        """A login role of PASSWORD_GROUP with this password (replacing one of that name). The password goes
        to the server as a SCRAM verifier made here (as psql's \\password does): never as text in SQL."""
        self.drop_role(role)
        with self.connect() as con:
            verifier = con.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
            con.execute(f"CREATE ROLE {ident(role)} LOGIN PASSWORD '{verifier}' IN ROLE {ident(PASSWORD_GROUP)}")

    def drop_role(self, role: str) -> None:
        """The role and every database it owns."""
        for (name,) in self.query("postgres", "SELECT datname FROM pg_database d JOIN pg_roles r "
                                              "ON r.oid = d.datdba WHERE r.rolname = %s", (role,)):
            self.drop_database(name)
        self.query("postgres", f"DROP ROLE IF EXISTS {ident(role)}")

    def create_database(self, name: str, owner: str | None = None, *, replace: bool = False) -> None:
        if replace:
            self.drop_database(name)
        self.query("postgres", f"CREATE DATABASE {ident(name)}" + (f" OWNER {ident(owner)}" if owner else ""))

    def drop_database(self, name: str) -> None:
        self.query("postgres", f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")

    def database_exists(self, name: str) -> bool:
        return bool(self.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))

    def databases(self) -> list[str]:
        return [r[0] for r in self.query("postgres", "SELECT datname FROM pg_database WHERE NOT datistemplate")]

    # -- what a database holds ------------------------------------------------------------------------
    def run_sql(self, db: str, sql: str, user: str | None = None) -> None:
        """A script of statements in db, as the superuser or (SET ROLE) as user, so what it creates is
        user's."""
        with self.connect(db) as con:
            if user:
                con.execute(f"SET ROLE {ident(user)}")
            con.execute(sql)

    def _tables(self, db: str) -> list[tuple[str, str]]:
        return self.query(db, "SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', "
                              "'information_schema')")

    def tables(self, db: str) -> list[str]:
        """Base tables of db outside the system schemas, `schema.table` outside public, sorted."""
        return sorted(t if s == "public" else f"{s}.{t}" for s, t in self._tables(db))

    def row_counts(self, db: str) -> dict[str, int]:
        """{table: COUNT(*)} of every base table (exact, not pg_class estimates), keyed as tables() names them."""
        counts = {}
        with self.connect(db) as con:
            for schema, name in self._tables(db):
                key = name if schema == "public" else f"{schema}.{name}"
                counts[key] = con.execute(f"SELECT count(*) FROM {ident(schema)}.{ident(name)}").fetchone()[0]
        return counts
