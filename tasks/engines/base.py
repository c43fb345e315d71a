"""What a database engine does for the steps (Engine), and the pieces every engine shares: a backup file's
check on the host, its sha256 before a load, and the row counts a restore must match.

An engine works on the transport, layout and database it is given; it opens no connection of its own
(tasks.engines sits below the session and the executor: the contract in pyproject.toml). Its methods take
plain arguments and keep no state: one instance serves every run.
"""
from __future__ import annotations

import contextlib
import posixpath
import re
from typing import Callable, Iterator, Sequence

from ..config import Database
from ..errors import StepError
from ..hostside import script
from ..layout import Layout
from ..runtime.leftovers import private_file
from ..transport import Cmd, CommandFailed, Transport, call_key
from .sqlcheck import PlanCheck
from .sqltext import Column

# $1 file, $2 the engine's name: prints sha256 and size, or fails naming what is wrong
VERIFY = script("backup_verify.sh")


class Engine:
    """One database engine (sqlite.py, mysql.py). The steps ask it; they never branch on db.engine."""

    name: str = ""
    backup_ext: str = ""                       # a backup file's extension, e.g. ".sql.gz"
    bounded_lock_waits: bool = False           # production's `manage.py migrate` runs through migrate_runner.py
    transactional_migrations: bool = False     # each Django migration is one transaction: a failed one leaves
                                               # nothing of itself behind (PostgreSQL's DDL is transactional)
    probe = None                               # the module of the copy's reads and write probe, run from here
                                               # (read_schema, table_sizes, probe_targets, Probe); None: no probe
    host_password_key = ""                     # the key of a password that stays on the hosts (reads_copy_on_host)
    guards_in_load = False                     # load_backup refuses a protected database itself, in the
                                               # session of its DROP (restore.py asks the target no identity)

    def app_env(self, db: Database) -> dict[str, str]:
        """What the app's env file says of its database: DATABASE_URL, and any variable beside it."""
        raise NotImplementedError

    def client_options(self, t: Transport, layout: Layout, db: Database) -> contextlib.AbstractContextManager:
        """A context giving the path of the client's option file on t (removed afterwards), or None."""
        return contextlib.nullcontext()

    def backup_source(self, db: Database) -> str:
        """What a backup's metadata names as its source."""
        raise NotImplementedError

    def dump(self, t: Transport, layout: Layout, db: Database, partial: str) -> dict:
        """Dump db into the file `partial` on t (mode 0600) and check it: returns sha256, size, tables (row
        counts) and how they were counted. A scratch file may lie at partial + ".db"; on failure the step
        removes both."""
        raise NotImplementedError

    def row_counts(self, t: Transport, layout: Layout, db: Database) -> dict[str, int]:
        """{table: COUNT(*)} of every table of db, read on t."""
        raise NotImplementedError

    def load_backup(self, t: Transport, layout: Layout, db: Database, meta: dict, path: str,
                    lock_wait: int | None = None, protected: Sequence[tuple] = ()) -> dict[str, int]:
        """Load the backup at path (on t, described by meta) for db; returns the loaded data's row counts.
        lock_wait: the most seconds its session waits for a lock, where the engine has lock waits.
        protected: server_identity answers db must not have (guards_in_load engines only; ProtectedTarget
        names the one it has, and nothing was changed)."""
        raise NotImplementedError

    def put_in_place(self, t: Transport, db: Database) -> None:
        """After load_backup's counts matched: what the load made becomes db (nothing, where it loaded into
        db itself)."""

    def server_identity(self, t: Transport, layout: Layout, db: Database) -> tuple:
        """(engine, server or host, ..., schema or file) as seen from t: two names that reach one database
        give one answer."""
        raise NotImplementedError

    def describe_identity(self, ident: tuple) -> str:
        """server_identity's answer in words: "<schema or file> on <server>"."""
        return f"{ident[-1]} on {ident[1]}"

    def access_denied(self, db: Database, text: str) -> str | None:
        """A server's refusal of the login in a client's error output, as one line naming the key that
        supplies the password and what to do; None when `text` holds none."""
        return None

    def reads_copy_on_host(self, db: Database) -> bool:
        """Does the rehearsal read and probe the copy on the host (this machine has no password for it)?"""
        return False

    def copy_without_probe(self, plan: dict) -> tuple[str, dict, dict] | None:
        """(the report's note, the copy's columns, table sizes) from the runner's plan, for an engine whose
        copy is not probed; None when it is."""
        return None

    def copy_columns(self, rows: list) -> dict[str, dict[str, Column]]:
        """The copy's schema rows (the probe module's read_schema, or the runner's plan) -> {table: columns}."""
        raise NotImplementedError

    def copy_connector(self, db: Database, host: str, port: int) -> Callable[[], object]:
        """A function that opens a new autocommit connection to db at host:port (the tunnel's end), its
        password kept in this process's memory only."""
        raise NotImplementedError

    def plan_check(self, before: dict[str, dict[str, Column]]) -> PlanCheck:
        """The parser of sqlmigrate's SQL into tables touched and unsafe operations, from the schema before."""
        return PlanCheck(before)


@contextlib.contextmanager
def told_as(t: Transport, hint_of: Callable[[str], str | None], passed: tuple = ()) -> Iterator[None]:
    """A client's failure inside, when hint_of (the engine's reading of the server's refusal: a login, a
    right) finds one in its text, raised as that one line naming the host; `passed` exceptions go as they are."""
    try:
        yield
    except passed:
        raise
    except (CommandFailed, StepError) as exc:   # a StepError made of a CommandFailed: that one's stderr too
        hint = hint_of("\n".join(str(getattr(e, "stderr", "")) for e in (exc, exc.__context__)) + str(exc))
        if hint is None:
            raise
        raise StepError(f"{t.host}: {hint}") from None


class ProtectedTarget(StepError):
    """load_backup found that the database it was to drop has protected[index]'s identity; nothing changed."""

    def __init__(self, index: int):
        super().__init__(f"the database to restore is protected database {index}")
        self.index = index


@contextlib.contextmanager
def secret_file(t: Transport, layout: Layout, filename: str, data: bytes,
                reads: Sequence[Sequence[str]] = ()) -> Iterator[str]:
    """The path of a 0600 file holding data (a client's password) in a new 0700 temp dir on t, removed
    afterwards; the password never travels on a command line. One exchange makes it, and carries `reads`
    (argvs the caller asks next, e.g. whether python3 is there): their answers are kept for its
    call_kept (transport.py: kept answers)."""
    path, cmds = private_file(layout, filename, data)
    answers = t.read_batch([(call_key(argv), Cmd(argv)) for argv in reads], cmds)
    try:
        for c, (code, _, err) in zip(cmds, answers):   # the first that failed (the next one was SKIPPED)
            if code != 0:
                raise CommandFailed(t.host, c.argv, code, err)
        yield path
    finally:
        t.call(["rm", "-rf", "--", posixpath.dirname(path)])


def secret_call(t: Transport, layout: Layout, filename: str, data: bytes,
                argv_of: Callable[[str], Sequence[str]]) -> str:
    """secret_file for one short command, in ONE exchange: the file made, argv_of(its path) run (only once
    the file is there), the temp dir removed (whatever happened). The command's stdout; the first of them
    that failed raises CommandFailed, as t.run would."""
    path, cmds = private_file(layout, filename, data)
    cmds.append(Cmd(argv_of(path), if_ok=True))
    answers = t.batch([*cmds, Cmd(["rm", "-rf", "--", posixpath.dirname(path)])])
    for c, (code, _, err) in zip(cmds, answers):
        if code != 0:
            raise CommandFailed(t.host, c.argv, code, err)
    return answers[len(cmds) - 1][1]


def verify_file(t: Transport, path: str, engine: str) -> tuple[str, int]:
    """A backup file's gzip integrity (and completion line, where the engine writes one): (sha256, size)."""
    sha, size = t.run(["sh", "-c", VERIFY, "sh", path, engine]).split()
    return sha, int(size)


def check_sha(t: Transport, meta: dict, path: str) -> None:
    digest = t.run(["sha256sum", "--", path]).split()[0]
    if digest != meta["sha256"]:
        raise StepError(f"{t.host}: backup {meta['file']} has sha256 {digest[:12]}, its metadata says "
                        f"{meta['sha256'][:12]}; it is damaged: take a new backup (doit backup:{meta['database']})")


def parse_row_counts(text: str) -> dict[str, int]:
    """'table<TAB>count' lines (mysql -N -B, or the sqlite script) -> {table: count}."""
    counts = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"(.+)\t(\d+)", line)
        if not m:
            raise ValueError(f"unexpected row-count line {line!r}")
        counts[m.group(1)] = int(m.group(2))
    return counts


def counts_mismatch(expected: dict, expected_after: dict | None, actual: dict) -> list[str]:
    """Tables whose restored row count is not what the backup held. A table written to while it was
    dumped may hold any count between the counts taken before and after the dump."""
    after = expected_after or expected
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"{table}: missing")
            continue
        if table not in expected and table not in after:
            problems.append(f"{table}: not in the backup")
            continue
        lo = min(expected.get(table, 0), after.get(table, 0))
        hi = max(expected.get(table, 0), after.get(table, 0))
        if not lo <= actual[table] <= hi:
            problems.append(f"{table}: {actual[table]} rows, backup has {expected.get(table)}")
    return problems
