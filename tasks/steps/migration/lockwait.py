"""A migration that gave up waiting for a lock: the migrate runner's report (hostside/migrate_runner.py) read
into the connections that hold it up, and the one line that says so. Pure: tested on canned reports.

The best source answers: the server's metadata locks (MariaDB's metadata_lock_info plugin, MySQL 8's
performance_schema), else its open InnoDB transactions (both need the PROCESS privilege), else a guess
from what the migration's own user may see: its other connections to the database, longest idle first.
PostgreSQL (the report's "server"): the sessions holding a lock on the table (pg_locks, which every role
may read), described from pg_stat_activity (another role's state and query only with pg_read_all_stats),
else the database's sessions in an open transaction, oldest first. There the blocked migration's own
changes were rolled back with its transaction: nothing of it was applied.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from ...engines.sqlcheck import PlanCheck
from .rehearsal_report import APPLYING, MARK

# server threads that hold no table lock of an app's
SYSTEM_COMMANDS = {"Daemon", "Binlog Dump", "Binlog Dump GTID", "Killed", "Slave_IO", "Slave_SQL", "Slave_worker"}
WAITING = "Waiting for table metadata lock"  # the queue behind the migration, not its cause
SHOWN = 3


@dataclass(frozen=True)
class Conn:
    id: int
    user: str = "?"
    host: str = "?"
    db: str | None = None
    command: str = "?"
    time: int | None = None
    state: str = ""
    verb: str = ""                # the first word of its current statement
    open_for: int | None = None   # seconds its transaction has been open, when the server told


def lock_event(out: str) -> dict | None:
    """The runner's report, from its stdout; None when it did not stop on a lock wait."""
    return runner_event(out, "lock_timeout")


def runner_event(out: str, kind: str) -> dict | None:
    """The runner's last report (its stdout's last MARK line) when it is of this kind ("lock_timeout", or
    "failed": how many changing statements had succeeded when the migration failed otherwise), else None."""
    for line in reversed(out.splitlines()):
        if MARK in line:
            try:
                event = json.loads(line[line.index(MARK) + len(MARK):])
            except ValueError:
                return None
            return event if isinstance(event, dict) and event.get("event") == kind else None
    return None


def applying(out: str) -> str | None:
    """The migration Django was applying when it stopped ('  Applying app.0005_x...' at verbosity >= 1)."""
    found = APPLYING.findall(out)
    return found[-1] if found else None


def waited_on(event: dict) -> list[str]:
    """The tables of the statement that gave up."""
    return PlanCheck({}).check([event["sql"]])["tables"] if event.get("sql") else []


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def processes(event: dict) -> list[Conn]:
    """The other connections the server showed, without its own threads and the queries queued behind."""
    out = []
    for row in event.get("processes") or []:
        if len(row) < 8 or row[4] in SYSTEM_COMMANDS or row[1] in ("system user", "event_scheduler"):
            continue
        if (row[6] or "").startswith(WAITING) or _int(row[0]) in (None, _int(event.get("me"))):
            continue
        out.append(Conn(int(row[0]), row[1] or "?", row[2] or "?", row[3], row[4] or "?", _int(row[5]),
                        row[6] or "", row[7] or ""))
    return out


def blockers(event: dict, tables: list[str]) -> tuple[list[Conn], str]:
    """(the connections holding the lock up, oldest first; how they were found: locks, transactions, guess)."""
    procs, me, db = processes(event), _int(event.get("me")), event.get("db")
    by_id = {c.id: c for c in procs}
    held = {_int(r[0]) for r in event.get("metadata_locks") or []
            if len(r) >= 3 and r[1] == db and r[2] in tables and _int(r[0]) != me}
    if held - {None}:
        return sorted((by_id.get(i) or Conn(i) for i in held if i is not None),
                      key=lambda c: -(c.time or 0)), "locks"
    if event.get("transactions") is not None:
        trx = {_int(r[0]): _int(r[1]) for r in event["transactions"] if len(r) >= 2 and _int(r[0]) != me}
        found = [replace(by_id.get(i) or Conn(i), open_for=age) for i, age in trx.items() if i is not None]
        mine = [c for c in found if c.db == db] or found
        return sorted(mine, key=lambda c: -(c.open_for or 0)), "transactions"
    guess = [c for c in procs if c.db == db]
    return sorted(guess, key=lambda c: -(c.time or 0)), "guess"


def describe(c: Conn) -> str:
    where = f"{c.user}@{c.host}" + (f", db {c.db}" if c.db else "")
    if c.command == "Sleep":
        doing = f"idle {c.time} s" if c.time is not None else "idle"
    elif c.command == "?":
        doing = "not shown to this user"
    else:
        doing = f"running {c.verb or c.command}" + (f" for {c.time} s" if c.time is not None else "")
        doing += f" ({c.state})" if c.state else ""
    if c.open_for is not None:
        doing += f", in a transaction open {c.open_for} s"
    elif c.command == "Sleep":
        doing += ", maybe in an open transaction"
    return f"connection {c.id} ({where}, {doing})"


@dataclass(frozen=True)
class Session:
    """A PostgreSQL session, from the runner's pg_stat_activity rows (or only its pid, from pg_locks)."""
    pid: int
    user: str = ""
    application: str = ""
    client: str = ""
    state: str = ""
    state_for: int | None = None     # seconds in that state
    open_for: int | None = None      # seconds its transaction has been open
    verb: str = ""
    lock: str = ""                   # the mode it holds on the table, when found by its lock


def sessions(event: dict) -> dict[int, Session]:
    out = {}
    for row in event.get("sessions") or []:
        if len(row) < 8 or _int(row[0]) in (None, _int(event.get("me"))):
            continue
        out[int(row[0])] = Session(int(row[0]), row[1] or "", row[2] or "", row[3] or "", row[4] or "",
                                   _int(row[5]), _int(row[6]), row[7] or "")
    return out


def pg_blockers(event: dict, tables: list[str]) -> tuple[list[Session], str]:
    """(the sessions holding the tables' locks, else those in an open transaction, oldest first; how found)."""
    by_pid, me = sessions(event), _int(event.get("me"))
    held: dict[int, str] = {}
    for row in event.get("locks") or []:
        pid = _int(row[0]) if len(row) >= 3 else None
        if pid is not None and pid != me and row[1] in tables and pid not in held:
            held[pid] = row[2] or ""
    if held:
        found = [replace(by_pid.get(p) or Session(p), lock=mode) for p, mode in held.items()]
        return sorted(found, key=lambda s: -(s.open_for or 0)), "locks"
    open_ = [s for s in by_pid.values() if s.open_for is not None and s.application != "doit-stages migrate"]
    return sorted(open_, key=lambda s: -(s.open_for or 0)), "transactions"


def describe_session(s: Session) -> str:
    # another role's session shows its pid only, without pg_read_all_stats
    who = ", ".join(x for x in (f"user {s.user}", f"application {s.application!r}" if s.application else "",
                                s.client) if x) if s.user else "not shown to this role"
    doing = s.state or ""
    if s.state.startswith("active") and s.verb:
        doing = f"running {s.verb}"
    if s.state_for is not None and doing:
        doing += f" for {s.state_for} s"
    if s.open_for is not None:
        doing += (", " if doing else "") + f"in a transaction open {s.open_for} s"
    if s.lock:
        doing += (", " if doing else "") + f"holding {s.lock}"
    return f"pid {s.pid} ({who}" + (f"; {doing}" if doing else "") + ")"


def pg_failure_line(head: str, event: dict, what: str, changed: bool, partial: bool) -> str:
    found, how = pg_blockers(event, waited_on(event))
    if found:
        lead = "held by" if how == "locks" else "probably held up by"
        who = f"{lead} {'; '.join(describe_session(s) for s in found[:SHOWN])}"
        todo = f"end that transaction (or SELECT pg_terminate_backend({found[0].pid})) and run again"
    else:
        who = f"held up by a session that {event.get('user')} cannot see"
        todo = "find it in pg_locks and pg_stat_activity as an administrator, end it, and run again"
    if partial:
        return (f"{head}: {who}; {todo}. Not tried again: {what} runs outside a transaction (atomic = False) and "
                f"had made {event.get('unrecorded')} change(s) before it waited, which a second attempt would "
                "repeat; they stay applied")
    nothing = (f"Nothing of {what} was applied (PostgreSQL runs each migration in a transaction)"
               if event.get("transactional") else "Nothing of it was applied")
    if not changed:
        return f"{head}: {who}; {todo}. {nothing}"
    return f"{head}: {who}; {todo}. {nothing}; the migrations before it stay applied and recorded"


def failure_line(stage: str, database: str, event: dict, out: str, attempts: int, changed: bool = True,
                 partial: bool = False) -> str:
    """One line: what waited, for what, how often, who holds it up, what to do, and what stays applied.
    partial: the blocked migration had changed the database before it waited (so it was not tried again)."""
    tables = waited_on(event)
    found, how = blockers(event, tables)
    what = applying(out) or "the migration"
    on = f" on {', '.join(tables)}" if tables else ""
    head = (f"migrate:{stage}: {what} gave up waiting for a lock{on} {attempts} time{'s' if attempts != 1 else ''}, "
            f"{event.get('seconds')} s each ([database:{database}] migration_lock_timeout, migration_lock_retries)")
    if event.get("server") == "postgresql":
        return pg_failure_line(head, event, what, changed, partial)
    if found:
        lead = {"locks": "held by", "transactions": "held up by", "guess": "probably held up by"}[how]
        who = f"{lead} {'; '.join(describe(c) for c in found[:SHOWN])}"
        if how == "guess":
            who += (f" (the server shows open transactions only to a user with the PROCESS privilege: these are "
                    f"the other connections of {event.get('user')} to {event.get('db')})")
        todo = f"end that transaction (or KILL {found[0].id}) and run again"
    else:
        who = (f"held up by a connection that {event.get('user')} cannot see (the server shows other users' "
               "connections only with the PROCESS privilege)")
        todo = "find it with SHOW PROCESSLIST as an administrator, end it, and run again"
    if not changed:
        return f"{head}: {who}; {todo}. Nothing was applied (no attempt got past its first change)"
    if partial:
        return (f"{head}: {who}; {todo}. Not tried again: {what} had made {event.get('unrecorded')} change(s) "
                "before it waited, which a second attempt would repeat; they stay applied (MySQL and MariaDB "
                "cannot roll back DDL)")
    return (f"{head}: {who}; {todo}. What ran before the blocked statement stays applied (Django records each "
            "migration as it finishes; MySQL and MariaDB cannot roll back DDL)")


def retry_line(stage: str, event: dict, out: str, attempt: int, attempts: int) -> str:
    tables = waited_on(event)
    on = f" on {', '.join(tables)}" if tables else ""
    return (f"migrate:{stage}: {applying(out) or 'the migration'} waited {event.get('seconds')} s for a lock{on} "
            f"(attempt {attempt} of {attempts}); trying again in {event.get('seconds')} s")
