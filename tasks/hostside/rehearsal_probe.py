"""The rehearsal's reads of the copy (schema, table sizes) and its write probe, on any DB-API connection to
MySQL/MariaDB with %s parameters: mysql-connector-python on the deploying machine (through the tunnel, for
password_env), or the app's own driver on the host (rehearsal_runner.py, for option_file).

Standard library only, and no imports of the package: on the host it is rehearsal_runner.py's neighbour
(steps/hostfiles.py), imported by it under the app's interpreter. PostgreSQL's reads are
rehearsal_probe_pg.py's, whose Probe is this one with its own session_sql and timed_out.
"""
from __future__ import annotations

import threading
import time

BIG_TABLE = 1_000_000   # above this estimate, information_schema's row estimate instead of COUNT(*)


def _text(value):
    """Some drivers give information_schema's text as bytes or bytearray."""
    return value.decode() if isinstance(value, (bytes, bytearray)) else value


def read_schema(con) -> list[tuple]:
    """information_schema.COLUMNS of the database: (table, column, type, nullable, default, key)."""
    cur = con.cursor()
    cur.execute("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_KEY "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION")
    rows = [tuple(_text(v) for v in r) for r in cur.fetchall()]
    cur.close()
    return rows


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def table_sizes(con, tables: list[str]) -> dict[str, dict]:
    """{table: {rows, rows_exact, mb}} of the existing ones among tables. Rows: COUNT(*) (exact; what a
    DBA compares with production) unless InnoDB's estimate is over BIG_TABLE rows, where counting would
    cost more than the rehearsal itself; then the estimate, marked rows_exact = false. MB: data + index."""
    if not tables:
        return {}
    cur = con.cursor()
    marks = ", ".join(["%s"] * len(tables))
    # a freshly restored copy's InnoDB statistics are stale (sizes near 0) until the background recount:
    # recount them now, on the throwaway copy (ANALYZE only samples pages)
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                "TABLE_NAME IN (" + marks + ")", tuple(tables))
    present = [_text(r[0]) for r in cur.fetchall()]
    if present:
        cur.execute("ANALYZE TABLE " + ", ".join(_q(t) for t in present))
        cur.fetchall()
    cur.execute("SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (" + marks + ")", tuple(tables))
    out = {}
    for name, estimate, size in cur.fetchall():
        name, exact, rows = _text(name), int(estimate or 0) <= BIG_TABLE, int(estimate or 0)
        if exact:
            cur.execute(f"SELECT COUNT(*) FROM {_q(name)}")
            rows = cur.fetchone()[0]
        out[name] = {"rows": int(rows), "rows_exact": exact, "mb": round(int(size or 0) / 1048576, 2)}
    cur.close()
    return out


def probe_targets(con, tables: list[str]) -> list[tuple[str, str, tuple | None]]:
    """(table, UPDATE, its parameters) for each table with a one-column primary key: a no-op write of a row."""
    cur = con.cursor()
    targets = []
    for table in tables:
        cur.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'", (table,))
        pk = [_text(r[0]) for r in cur.fetchall()]
        if len(pk) != 1:
            continue
        cur.execute(f"SELECT {_q(pk[0])} FROM {_q(table)} LIMIT 1")
        row = cur.fetchone()
        # None, not (), for an empty table: MySQLdb formats a statement with % whenever it is given parameters
        where, params = (f"{_q(pk[0])} = %s", (row[0],)) if row else (f"{_q(pk[0])} IS NULL", None)
        targets.append((table, f"UPDATE {_q(table)} SET {_q(pk[0])} = {_q(pk[0])} WHERE {where}", params))
    cur.close()
    return targets


class Probe:
    """One thread per table, each with its own autocommit session (make_connection()), writing one row every
    `interval` seconds and recording (sent, answered) on this process's monotonic clock. A write never waits
    more than `timeout` (lock_wait_timeout, innodb_lock_wait_timeout): the probe never hangs the rehearsal."""

    def __init__(self, make_connection, targets: list[tuple], interval: float = 0.05, timeout: int = 30):
        self.make_connection, self.targets, self.interval, self.timeout = make_connection, targets, interval, timeout
        self.writes: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in targets]
        self._ready = threading.Barrier(len(targets) + 1)

    def session_sql(self) -> str:
        """What bounds each probe session's waits (the engine's own probe module may say it otherwise)."""
        return (f"SET SESSION lock_wait_timeout = {int(self.timeout)}, "
                f"innodb_lock_wait_timeout = {int(self.timeout)}")

    @staticmethod
    def timed_out(exc: Exception) -> bool:
        """Did this write give up waiting (a stall of the timeout's length), rather than fail?"""
        return "Lock wait timeout" in str(exc)

    def start(self) -> None:
        for th in self._threads:
            th.start()
        if self._threads:
            self._ready.wait(timeout=30)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=self.timeout + 5)

    def _run(self, target) -> None:
        table, sql, params = target
        con = None
        try:
            con = self.make_connection()
            cur = con.cursor()
            cur.execute(self.session_sql())
        except Exception as exc:
            self.errors.append(f"{table}: {exc}")
        finally:
            self._ready.wait(timeout=30)
        if con is None:
            return
        try:
            self._write(table, cur, sql, params)
        finally:
            con.close()

    def _write(self, table: str, cur, sql: str, params) -> None:
        """Until stop(), then once more: a write sent after the last migration ended bounds a migration
        shorter than the interval, that no write overlapped (rehearsal.attribute_stalls)."""
        while True:
            stopping = self._stop.is_set()
            sent = time.monotonic()
            try:
                if params is None:
                    cur.execute(sql)
                else:
                    cur.execute(sql, params)
            except Exception as exc:  # the table was dropped or renamed, or the wait timed out
                answered = time.monotonic()
                if self.timed_out(exc):
                    with self._lock:
                        self.writes.append((sent, answered))
                    if stopping:
                        return
                    continue
                self.errors.append(f"{table}: {exc}")
                return
            answered = time.monotonic()
            with self._lock:
                self.writes.append((sent, answered))
            if stopping:
                return
            self._stop.wait(max(0.0, self.interval - (answered - sent)))
