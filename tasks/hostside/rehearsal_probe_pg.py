"""The rehearsal's reads of a PostgreSQL copy (schema, table sizes) and its write probe, on any DB-API
connection to it with %s parameters: psycopg 3 on the deploying machine (through the tunnel, for
password_env), or the app's own driver on the host (psycopg 3 or psycopg2 under Django, in
rehearsal_runner.py, for passfile). The same interface as rehearsal_probe.py (MySQL's), whose Probe this
one's extends.

Tables are named as the migrations' SQL names them (pg_sqlcheck.py: without their schema), found by the
search path as the app finds them (to_regclass(quote_ident(name))).

Standard library only, and no imports of the package but its neighbour: on the host it is
rehearsal_runner.py's neighbour (steps/hostfiles.py), imported by it under the app's interpreter.
"""
from __future__ import annotations

try:
    from .rehearsal_probe import Probe as _Probe
except ImportError:   # on the host: the runner's neighbour, imported by its file name
    from rehearsal_probe import Probe as _Probe

BIG_TABLE = 1_000_000   # above this estimate (pg_class.reltuples), the estimate instead of count(*)

# The copy's columns: (table, column, type as format_type() writes it, nullable, has a default), the
# tables of the search path's schemas (pg_sqlcheck.columns_from_rows reads them)
COLUMNS = """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, a.atthasdef
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname = ANY (current_schemas(false))
ORDER BY 1, a.attnum"""

# the named tables that exist: (name as asked, its regclass as SQL text: quoted and qualified as needed)
FIND = """SELECT t.name, c.oid::regclass::text FROM unnest(%s::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name)) WHERE c.relkind IN ('r', 'p')"""
SIZES = """SELECT t.name, c.reltuples::bigint, pg_total_relation_size(c.oid) FROM unnest(%s::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))"""
PRIMARY_KEY = """SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
AND a.attnum = ANY (i.indkey) WHERE i.indrelid = to_regclass(quote_ident(%s)) AND i.indisprimary"""
# a probe write that waits longer than the probe's timeout gives up (SQLSTATE 55P03 / 57014)
TIMEOUT_TEXTS = ("canceling statement due to lock timeout", "canceling statement due to statement timeout")


def _text(value):
    return value.decode() if isinstance(value, (bytes, bytearray)) else value


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_schema(con) -> list[tuple]:
    """COLUMNS' rows: (table, column, type, nullable, has default)."""
    cur = con.cursor()
    cur.execute(COLUMNS)
    rows = [tuple(_text(v) for v in r) for r in cur.fetchall()]
    cur.close()
    return rows


def table_sizes(con, tables: list[str]) -> dict[str, dict]:
    """{table: {rows, rows_exact, mb}} of the existing ones among tables. Rows: count(*) (exact) unless the
    planner's estimate is over BIG_TABLE rows (then the estimate, rows_exact = false). MB: the table with its
    indexes and TOAST (pg_total_relation_size)."""
    if not tables:
        return {}
    cur = con.cursor()
    cur.execute(FIND, (list(tables),))
    present = [(_text(name), _text(reg)) for name, reg in cur.fetchall()]
    if present:
        # a freshly restored copy has no statistics (reltuples -1) until autovacuum gets to it: ANALYZE
        # samples them now, on the throwaway copy
        cur.execute("ANALYZE " + ", ".join(reg for _, reg in present))
    regs = dict(present)
    cur.execute(SIZES, ([name for name, _ in present],))
    out = {}
    for name, estimate, size in cur.fetchall():
        name, estimate = _text(name), max(int(estimate or 0), 0)
        exact, rows = estimate <= BIG_TABLE, estimate
        if exact:
            cur.execute(f"SELECT count(*) FROM {regs[name]}")
            rows = cur.fetchone()[0]
        out[name] = {"rows": int(rows), "rows_exact": exact, "mb": round(int(size or 0) / 1048576, 2)}
    cur.close()
    return out


def probe_targets(con, tables: list[str]) -> list[tuple[str, str, tuple | None]]:
    """(table, UPDATE, its parameters) for each table with a one-column primary key: a no-op write of a row
    (ROW EXCLUSIVE: what the live release's writes take, so it waits where they would)."""
    cur = con.cursor()
    cur.execute(FIND, (list(tables),))
    regs = {_text(name): _text(reg) for name, reg in cur.fetchall()}
    targets = []
    for table in tables:
        if table not in regs:
            continue
        cur.execute(PRIMARY_KEY, (table,))
        pk = [_text(r[0]) for r in cur.fetchall()]
        if len(pk) != 1:
            continue
        cur.execute(f"SELECT {_q(pk[0])} FROM {regs[table]} LIMIT 1")
        row = cur.fetchone()
        where, params = (f"{_q(pk[0])} = %s", (row[0],)) if row else (f"{_q(pk[0])} IS NULL", None)
        targets.append((table, f"UPDATE {regs[table]} SET {_q(pk[0])} = {_q(pk[0])} WHERE {where}", params))
    cur.close()
    return targets


class Probe(_Probe):
    """rehearsal_probe.Probe on PostgreSQL: each session's waits bounded by lock_timeout (and
    statement_timeout, so nothing else hangs it either); a write that gives up counts as a stall of that
    length."""

    def session_sql(self) -> str:
        wait = f"'{int(self.timeout)}s'"
        return f"SELECT set_config('lock_timeout', {wait}, false), set_config('statement_timeout', {wait}, false)"

    @staticmethod
    def timed_out(exc: Exception) -> bool:
        return any(text in str(exc) for text in TIMEOUT_TEXTS)
