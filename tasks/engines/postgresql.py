"""PostgreSQL: the app's DATABASE_URL, libpq's password file on the host, the dump and its one-pass check
(hostside/dumpfilter.py, postgresql mode), the restore (the database dropped WITH (FORCE), created again owned
by its user, loaded in one transaction), the server's identity, and its refusals as what to fix. The pure
parts (URL, password-file line, client environment, queries and their parsers, refusals) are pg_sql.py.

The steps run psql and pg_dump on the host (over the transport): the database is often reachable only from
the hosts. The password reaches them only through a libpq password file: with password_env, a 0600 file in a
0700 temporary directory under .deploy named by this run (`cnf.<owner>.<random>/pgpass`, so that a killed run's
file is found and removed by the next one: runtime/leftovers.py); with passfile, the user's own file on the
host, which the tool never reads. PGPASSFILE and the other connection settings are given by `env K=V ...`
(pg_sql.client_env): names and paths, never the password.

The role of [database:<name>] user needs, for a backup, to read every table of the database; for a restore
(restore:<stage>, a failed production migration's restore): to own the database (DROP DATABASE), the
CREATEDB attribute (CREATE DATABASE ... OWNER itself), CONNECT on the maintenance database `postgres`, and,
if other roles' sessions use the database, the right to end them (pg_signal_backend; DROP ... WITH (FORCE)
ends them). With passfile, the file needs a line for the database and one for `postgres` (or `*`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from typing import Sequence

from ..config import ConfigError, Database
from ..errors import StepError
from ..layout import Layout
from ..runtime.common import last_line
from ..runtime.leftovers import list_leftovers, sweep_leftovers
from ..transport import CommandFailed, Transport
from .base import ProtectedTarget, check_sha, counts_mismatch, secret_call, secret_file, told_as, verify_file
from .mysql import DAMAGED, HAS_PYTHON, filter_source, streams
from .pg_sql import (
    MAINTENANCE_DB,
    PROTECTED_RE,
    ROW_COUNTS,
    access_denied,
    client_env,
    database_url,
    env_argv,
    parse_copy_tags,
    parse_row_counts,
    parse_server_identity,
    pgpass_line,
    protected_entries,
    protected_sql,
    psql_argv,
    restore_refusal,
    server_identity_sql,
)
from .postgresql_rehearsal import PostgreSQLRehearsal
from .streaming import run_streaming

LIBPQ_DEFAULT_PASSFILE = "~/.pgpass"
# data, sequences' values (setval), constraints and indexes; no ALTER ... OWNER TO and no GRANT: the dump
# loads into another database owned by another role (the test stage's)
PG_DUMP = "pg_dump --no-owner --no-privileges"
DUMP = f'set -o pipefail; umask 077; {PG_DUMP} | gzip -1 -n -c > "$1"'
# $2: dumpfilter.py's text; prints the backup's sha256, size and row counts as one JSON line
DUMP_STREAM = f'set -o pipefail; umask 077; {PG_DUMP} | python3 -c "$2" dump "$1" 1 postgresql'
# quiet (no tags) for the checks, DROP and CREATE; the restore's prologue turns the tags on for the dump
PSQL_LOAD = "psql -X -q -v ON_ERROR_STOP=1"
# $1 file, $2 sha256, $3 database, $4 owner, $5 dumpfilter.py, $6...: protected identities (protected_entries):
# the filter hashes the file, then sends the checks (CREATEDB, none of the protected), DROP, CREATE, \connect,
# BEGIN, the dump and COMMIT (only once the dump's last line came); psql prints the dump's queries and their
# tags, of which only the COPY lines come back (pg_sql.parse_copy_tags: the rows each COPY stored; a large
# object's lo_write, echoed too, stays on the host)
LOAD_STREAM = (f'set -o pipefail; python3 -c "$5" restore "$1" "$2" postgresql "$3" "$4" "${{@:6}}" | '
               f"{PSQL_LOAD} -d {MAINTENANCE_DB} -f - | sed -n '/^COPY /p'")
LOAD = f'set -o pipefail; gunzip -c "$1" | {PSQL_LOAD} --single-transaction -f - >/dev/null'
# before DROP DATABASE: a role that may not create it again is refused while the database still stands
CAN_CREATE = ("DO $$BEGIN IF NOT (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) "
              "THEN RAISE EXCEPTION 'permission denied to create database (role % lacks CREATEDB)', current_user; "
              "END IF; END$$")
# $1 passfile as written ('~/' = the login's home on the host): prints its path, or fails if unreadable
FIND_PASSFILE = 'f=$1; case $f in "~/"*) f=$HOME/${f#??};; esac; [ -f "$f" ] && [ -r "$f" ] && printf %s "$f"'
# psql's error on the line of its input it ran: lines 1-2 of the restore's input are the check and the DROP
INPUT_ERROR = re.compile(r"psql:<stdin>:(\d+): (?:ERROR|FATAL)")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def app_env(db: Database) -> dict[str, str]:
    """DATABASE_URL; with passfile, PGPASSFILE beside it (libpq reads the password there). libpq does not
    expand ~ in PGPASSFILE: ~/.pgpass is libpq's own default (nothing to set); another ~/ path is refused."""
    env = {"DATABASE_URL": database_url(db)}
    if db.passfile and db.passfile != LIBPQ_DEFAULT_PASSFILE:
        if db.passfile.startswith("~"):
            raise StepError(f"[database:{db.name}] passfile = {db.passfile}: the app's libpq does not expand ~ in "
                            f"PGPASSFILE; write the file's absolute path, or use {LIBPQ_DEFAULT_PASSFILE} "
                            "(libpq's default)")
        env["PGPASSFILE"] = db.passfile
    return env


def password_file(db: Database) -> bytes:
    """The tool's password file (password_env): a line for the database and one for the maintenance
    database a restore runs DROP and CREATE DATABASE in."""
    try:
        return (pgpass_line(db) + pgpass_line(dataclasses.replace(db, dbname=MAINTENANCE_DB))).encode()
    except ConfigError as exc:
        raise StepError(str(exc)) from None


def host_passfile(t: Transport, db: Database) -> str:
    """The user's password file on the host, which the tool never reads: its password stays on the host.
    Checked first: libpq silently goes on without a file it cannot read, and the login fails later."""
    code, out, _ = t.call(["sh", "-c", FIND_PASSFILE, "sh", db.passfile])
    if code != 0 or not out:
        raise StepError(f"[database:{db.name}] passfile {db.passfile}: no readable file on {t.host}; put libpq's "
                        "password file there (mode 0600) or fix passfile")
    return out


def refusal(db: Database, text: str) -> str | None:
    """The server's refusal in a client's error output (a restore's rights, or the login), as one line."""
    return restore_refusal(db, text) or access_denied(db, text)


class LoadFailed(StepError):
    """A restore's failure, already told (client_options passes it on as it is)."""


class PostgreSQL(PostgreSQLRehearsal):
    """The rehearsal's methods (probe, copy_columns, copy_connector, plan_check, reads_copy_on_host) are
    postgresql_rehearsal.py's."""
    name = "postgresql"
    backup_ext = ".sql.gz"
    guards_in_load = True
    bounded_lock_waits = True
    transactional_migrations = True

    def app_env(self, db: Database) -> dict[str, str]:
        return app_env(db)

    @contextlib.contextmanager
    def client_options(self, t: Transport, layout: Layout, db: Database, reads: Sequence[Sequence[str]] = ()):
        """The path of the libpq password file on the host for this database's clients: with password_env a
        0600 file of ours in a 0700 temp dir (removed afterwards; reads: asked in the same exchange, answers
        kept: secret_file), with passfile the user's own. The server's refusal of any client run with it
        comes out as what to fix (access_denied, restore_refusal)."""
        with refusals_told(t, db):
            if db.password_env:
                with secret_file(t, layout, "pgpass", password_file(db), reads) as path:
                    yield path
            else:
                yield host_passfile(t, db)

    def backup_source(self, db: Database) -> str:
        return f"{db.dbname}@{db.host}:{db.port}"

    def dump(self, t: Transport, layout: Layout, db: Database, partial: str) -> dict:
        """pg_dump's plain SQL (COPY blocks, the sequences' setval), compressed and checked in one pass with
        python3 on the host; without it, COUNT(*) before and after the dump and the file checked after."""
        with self.client_options(t, layout, db, [HAS_PYTHON]) as passfile:
            env = client_env(db, passfile)
            if streams(t):
                out = run_streaming(t, env_argv(env, ["bash", "-c", DUMP_STREAM, "bash", partial, filter_source()]),
                                    f"backup:{db.name}")
                got = json.loads(out.strip().splitlines()[-1])
                return {"sha256": got["sha256"], "size": got["size"], "sql_bytes": got["sql_bytes"],
                        "tables": got["tables"], "counted": "dump"}
            before = counts(t, env)
            t.run(env_argv(env, ["bash", "-c", DUMP, "bash", partial]))
            after = counts(t, env)
        sha, size = verify_file(t, partial, self.name)
        return {"sha256": sha, "size": size, "tables": before, "tables_after": after, "counted": "count"}

    def row_counts(self, t: Transport, layout: Layout, db: Database) -> dict[str, int]:
        with self.client_options(t, layout, db) as passfile:
            return counts(t, client_env(db, passfile))

    def load_backup(self, t: Transport, layout: Layout, db: Database, meta: dict, path: str,
                    lock_wait: int | None = None, protected: Sequence[tuple] = ()) -> dict[str, int]:
        """The file's sha256 checked first; then, connected to the maintenance database: the role's CREATEDB
        checked and the database found to be none of `protected` (ProtectedTarget), DROP DATABASE ... WITH
        (FORCE), CREATE DATABASE ... OWNER the role, and the dump loaded in one transaction (a load that fails
        leaves the new database empty). lock_wait bounds every lock wait of these sessions (lock_timeout; the
        dump's own `SET lock_timeout = 0` comes after the DROP)."""
        guard = protected_entries(db.dbname, protected)
        with self.client_options(t, layout, db, [HAS_PYTHON, list_leftovers(layout).argv]) as passfile:
            sweep_leftovers(t, layout)   # its read came with the option file's exchange
            env = client_env(db, passfile)
            if lock_wait:
                env["PGOPTIONS"] = f"-c lock_timeout={int(lock_wait)}s"
            try:
                if streams(t):
                    out = run_streaming(t, env_argv(env, ["bash", "-c", LOAD_STREAM, "bash", path, meta["sha256"],
                                                          db.dbname, db.user, filter_source(), *guard]),
                                        f"restore:{db.name}")
                    # the rows each COPY stored, committed: when they are the backup's, no COUNT(*) pass
                    tags = parse_copy_tags(out)
                    if not counts_mismatch(meta["tables"], meta.get("tables_after"), tags):
                        return tags
                else:
                    check_sha(t, meta, path)
                    try:
                        checks = f"{CAN_CREATE}; {protected_sql(db.dbname, guard)}" if guard else CAN_CREATE
                        t.run(env_argv(env, [*psql_argv(checks), "-d", MAINTENANCE_DB]))
                    except CommandFailed as exc:
                        raise load_failed(t, db, meta, exc, before_drop=True) from None
                    t.run(env_argv(env, [*psql_argv(f"DROP DATABASE IF EXISTS {ident(db.dbname)} WITH (FORCE)"),
                                         "-d", MAINTENANCE_DB,
                                         "-c", f"CREATE DATABASE {ident(db.dbname)} OWNER {ident(db.user)}"]))
                    t.run(env_argv(env, ["bash", "-c", LOAD, "bash", path]))
            except CommandFailed as exc:
                raise load_failed(t, db, meta, exc) from None
            return counts(t, env)

    def server_identity(self, t: Transport, layout: Layout, db: Database) -> tuple:
        """("postgresql", the cluster's system_identifier, the database's oid (0: none of that name yet), its
        name): what one database is however it is reached (localhost or 127.0.0.1, a forwarded port). The
        server's address and port are left out: two ways to one server may show two addresses (::1,
        127.0.0.1). A streaming replica has its primary's identifier and oids: refusing it too is the safer
        mistake."""
        # asked in the maintenance database: the database itself may not exist yet (oid 0); with password_env
        # in ONE exchange (the password file made, the query, the file removed: secret_call)
        query = [*psql_argv(server_identity_sql(db.dbname)), "-d", MAINTENANCE_DB]
        with refusals_told(t, db):
            if db.password_env:
                out = secret_call(t, layout, "pgpass", password_file(db),
                                  lambda path: env_argv(client_env(db, path), query))
            else:
                out = t.run(env_argv(client_env(db, host_passfile(t, db)), query))
        try:
            system, _addr, _port, oid, name = parse_server_identity(out)
        except ValueError as exc:
            raise StepError(f"{t.host}: [database:{db.name}]: {exc}") from None
        return ("postgresql", system, oid, name)

    def describe_identity(self, ident: tuple) -> str:
        return f"database {ident[3]} (oid {ident[2]}) of the PostgreSQL server with system identifier {ident[1]}"

    def access_denied(self, db: Database, text: str) -> str | None:
        return access_denied(db, text)


def refusals_told(t: Transport, db: Database):
    """The server's refusal of a client (its rights, the login) raised as what to fix (refusal), in one line;
    a restore's own failures (LoadFailed, ProtectedTarget) go as they are."""
    return told_as(t, lambda text: refusal(db, text), (LoadFailed, ProtectedTarget))


def counts(t: Transport, env: dict[str, str]) -> dict[str, int]:
    return parse_row_counts(t.run(env_argv(env, psql_argv(ROW_COUNTS))))


def load_failed(t: Transport, db: Database, meta: dict, exc: CommandFailed,
                before_drop: bool = False) -> StepError:
    """A restore's failure as one line: damaged (nothing done), a protected database (ProtectedTarget:
    nothing done), refused before the DROP (nothing done), or failed after it (the database is there, empty
    or as the server left it)."""
    text = "\n".join(str(x) for x in (exc.stderr, exc))
    why = last_line(exc.stderr, str(exc))
    guarded = PROTECTED_RE.search(text)
    if guarded:
        return ProtectedTarget(int(guarded.group(1)))
    if exc.retcode == DAMAGED:
        return LoadFailed(f"{t.host}: backup {meta['file']} is damaged ({why}); {db.name} was not changed: "
                         f"take a new backup (doit backup:{meta['database']})")
    at = INPUT_ERROR.search(text)
    before_drop = before_drop or (at is not None and int(at.group(1)) <= 2)
    hint = refusal(db, text)
    if hint and (before_drop or access_denied(db, text)):
        return LoadFailed(f"{t.host}: {hint}; {db.name} was not changed")
    return LoadFailed(f"{t.host}: restore of {meta['file']} into {db.name} failed ({hint or why}); the database is "
                     "not usable")
