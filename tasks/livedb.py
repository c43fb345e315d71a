"""The deploying machine reading a MySQL/MariaDB database itself, with mysql-connector-python (pure
Python) through an SSH tunnel to the database as the hosts see it: the rehearsal's schema and size reads
and its write probe. The password stays in this process's memory: from password_env, or read from the
option file on the host over the transport (never written anywhere, never on a command line)."""
from __future__ import annotations

import threading
import time

from .config import Database
from .transport import Transport

# $1 the option file as configured: a leading ~/ is the remote user's home
READ_OPTION_FILE = 'f=$1; case $f in "~/"*) f=$HOME/${f#"~/"};; esac; cat -- "$f"'
BIG_TABLE = 1_000_000   # above this estimate, information_schema's row estimate instead of COUNT(*)


def parse_option_file(text: str) -> dict[str, str]:
    """The [client] (and [mysql]) values of a MySQL option file, as the client tools read them: one pair of
    matching quotes stripped, backslash escapes decoded, '#' a comment outside quotes."""
    values, section = {}, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
            continue
        if section not in ("client", "mysql", "client-server", "client-mariadb", "mariadb-client"):
            continue
        key, eq, value = line.partition("=")
        if eq:
            values[key.strip().replace("_", "-")] = _option_value(value.strip())
    return values


def _option_value(v: str) -> str:
    if len(v) >= 2 and v[0] in "'\"" and v.endswith(v[0]):
        v = v[1:-1]
    else:
        v = v.split(" #", 1)[0].strip() if not v.startswith("#") else ""
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", "\\": "\\", '"': '"', "'": "'"}
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v) and v[i + 1] in escapes:
            out.append(escapes[v[i + 1]])
            i += 2
            continue
        out.append(v[i])
        i += 1
    return "".join(out)


def credentials(t: Transport, db: Database) -> tuple[str, str]:
    """(user, password) of db, kept in memory only."""
    if db.password_env:
        return db.user, db.password()
    code, out, _ = t.call(["sh", "-c", READ_OPTION_FILE, "sh", db.option_file])
    values = parse_option_file(out) if code == 0 else {}
    return values.get("user", db.user) or db.user, values.get("password", "")


def connect(host: str, port: int, db: Database, user: str, password: str):
    import mysql.connector
    return mysql.connector.connect(host=host, port=port, user=user, password=password, database=db.dbname,
                                   use_pure=True, autocommit=True, connection_timeout=10)


def read_schema(con) -> list[tuple]:
    """information_schema.COLUMNS of the database: (table, column, type, nullable, default, key)."""
    cur = con.cursor()
    cur.execute("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_KEY "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION")
    rows = [tuple(r) for r in cur.fetchall()]
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
    # a freshly restored copy's InnoDB statistics are stale (sizes near 0) until the background recount:
    # recount them now, on the throwaway copy (ANALYZE only samples pages)
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                "TABLE_NAME IN (" + ", ".join(["%s"] * len(tables)) + ")", tuple(tables))
    present = [r[0] for r in cur.fetchall()]
    if present:
        cur.execute("ANALYZE TABLE " + ", ".join(_q(t) for t in present))
        cur.fetchall()
    cur.execute("SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (" + ", ".join(["%s"] * len(tables)) + ")",
                tuple(tables))
    out = {}
    for name, estimate, size in cur.fetchall():
        exact = (estimate or 0) <= BIG_TABLE
        rows = estimate or 0
        if exact:
            cur.execute(f"SELECT COUNT(*) FROM {_q(name)}")
            rows = cur.fetchone()[0]
        out[name] = {"rows": int(rows), "rows_exact": exact, "mb": round((size or 0) / 1048576, 2)}
    cur.close()
    return out


def probe_targets(con, tables: list[str]) -> list[tuple[str, str, tuple]]:
    """(table, UPDATE, its parameters) for each table with a one-column primary key: a no-op write of a row."""
    cur = con.cursor()
    targets = []
    for table in tables:
        cur.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'", (table,))
        pk = [r[0] for r in cur.fetchall()]
        if len(pk) != 1:
            continue
        cur.execute(f"SELECT {_q(pk[0])} FROM {_q(table)} LIMIT 1")
        row = cur.fetchone()
        where, params = (f"{_q(pk[0])} = %s", (row[0],)) if row else (f"{_q(pk[0])} IS NULL", ())
        targets.append((table, f"UPDATE {_q(table)} SET {_q(pk[0])} = {_q(pk[0])} WHERE {where}", params))
    cur.close()
    return targets


class Probe:
    """One thread per table, each with its own autocommit session, writing one row every `interval`
    seconds and recording (sent, answered) on this machine's monotonic clock. A write never waits more
    than `timeout` (lock_wait_timeout, innodb_lock_wait_timeout): the probe never hangs the rehearsal."""

    def __init__(self, make_connection, targets: list[tuple[str, str, tuple]], interval: float = 0.05,
                 timeout: int = 30):
        self.make_connection, self.targets, self.interval, self.timeout = make_connection, targets, interval, timeout
        self.writes: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in targets]
        self._ready = threading.Barrier(len(targets) + 1)

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
            cur.execute(f"SET SESSION lock_wait_timeout = {int(self.timeout)}, "
                        f"innodb_lock_wait_timeout = {int(self.timeout)}")
        except Exception as exc:
            self.errors.append(f"{table}: {exc}")
        finally:
            self._ready.wait(timeout=30)
        if con is None:
            return
        try:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    cur.execute(sql, params)
                except Exception as exc:  # the table was dropped or renamed, or the wait timed out
                    answered = time.monotonic()
                    if "Lock wait timeout" in str(exc):
                        with self._lock:
                            self.writes.append((sent, answered))
                        continue
                    self.errors.append(f"{table}: {exc}")
                    return
                answered = time.monotonic()
                with self._lock:
                    self.writes.append((sent, answered))
                self._stop.wait(max(0.0, self.interval - (answered - sent)))
        finally:
            con.close()
