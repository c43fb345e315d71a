"""sqlite: a database file on one host. The app's DATABASE_URL, a consistent copy as the backup
(hostside/sqlite_copy.py, checked by PRAGMA integrity_check), row counts (hostside/sqlite_counts.py), a
restore loaded beside the file and renamed over it once its counts match, and no write probe in the
rehearsal (one writer at a time): the copy's schema and sizes come with the runner's plan."""
from __future__ import annotations

from urllib.parse import quote

from ..config import Database
from ..hostside import script
from ..layout import Layout
from ..transport import Transport
from .base import Engine, check_sha, parse_row_counts, verify_file
from .sqltext import columns_from_sqlite

# run by python3 on the host: $1 database file -> "table<TAB>count" lines.
SQLITE_COUNTS_PY = script("sqlite_counts.py")
SQLITE_COPY_PY = script("sqlite_copy.py")
SQLITE_LOAD = ('set -e; umask 077; mkdir -p "$(dirname "$2")"; gunzip -c "$1" > "$2.restore"; '
               'python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); '
               'sys.exit(c.execute(\'PRAGMA integrity_check\').fetchone()[0] != \'ok\')" "$2.restore"')
NO_PROBE = "sqlite: no write probe (one writer at a time); max_write_stall is null"


def database_url(db: Database) -> str:
    return "sqlite:///" + quote(db.path, safe="/")  # absolute: sqlite:////srv/x.sqlite3


def counts(t: Transport, path: str) -> dict[str, int]:
    return parse_row_counts(t.run(["python3", "-c", SQLITE_COUNTS_PY, path]))


def plan_sizes(plan: dict) -> dict:
    """The runner's plan's sqlite tables -> {table: {rows, rows_exact, mb}}."""
    out = {}
    for name, info in (plan.get("sqlite") or {}).items():
        size = info.get("bytes")
        out[name] = {"rows": info["rows"], "rows_exact": True,
                     "mb": round(size / 1048576, 2) if size is not None else None}
    return out


class SQLite(Engine):
    name = "sqlite"
    backup_ext = ".sqlite3.gz"

    def app_env(self, db: Database) -> dict[str, str]:
        return {"DATABASE_URL": database_url(db)}

    def backup_source(self, db: Database) -> str:
        return db.path

    def dump(self, t: Transport, layout: Layout, db: Database, partial: str) -> dict:
        copy = partial + ".db"
        t.run(["python3", "-c", SQLITE_COPY_PY, db.path, copy])
        tables = counts(t, copy)
        t.run(["sh", "-c", 'umask 077; gzip -n -c "$1" > "$2" && rm -f "$1"', "sh", copy, partial])
        sha, size = verify_file(t, partial, self.name)
        return {"sha256": sha, "size": size, "tables": tables, "tables_after": tables, "counted": "count"}

    def row_counts(self, t: Transport, layout: Layout, db: Database) -> dict[str, int]:
        return counts(t, db.path)

    def load_backup(self, t: Transport, layout: Layout, db: Database, meta: dict, path: str,
                    lock_wait: int | None = None, protected=()) -> dict[str, int]:
        """Into <path>.restore beside the database file (put_in_place renames it over the file)."""
        check_sha(t, meta, path)
        t.run(["sh", "-c", SQLITE_LOAD, "sh", path, db.path])
        return counts(t, db.path + ".restore")

    def put_in_place(self, t: Transport, db: Database) -> None:
        t.run(["mv", "-f", "--", db.path + ".restore", db.path])

    def server_identity(self, t: Transport, layout: Layout, db: Database) -> tuple:
        return "sqlite", str(t.host), t.run(["realpath", "-m", "--", db.path]).strip()

    def copy_without_probe(self, plan: dict) -> tuple[str, dict, dict]:
        creates = {k: v["sql"] for k, v in (plan.get("sqlite") or {}).items()}
        return NO_PROBE, columns_from_sqlite(creates), plan_sizes(plan)
