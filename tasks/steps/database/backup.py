"""backup: a verified backup of a database, made on its backup host into db_backup/ (mode 0600).

A backup counts only when complete and checked: mysqldump's completion line (sqlite: integrity_check),
gzip integrity, sha256 and the rows of every table. With python3 on the host (the usual case), all of it is
done in ONE pass while the dump streams (dumpfilter.py: zlib level 1, the compressed bytes hashed and
inflated again, rows counted from the INSERT statements); without python3, the dump is written by gzip -1
and checked afterwards (gzip -t, the last line, sha256sum, COUNT(*) before and after). It is written under a
.partial name and its metadata file is written last: a dump that died half-way has no metadata and is never
listed. The newest is chosen by the metadata's time.
"""
from __future__ import annotations

import contextlib
import json
import posixpath
from datetime import datetime, timezone
from pathlib import Path

from ...config import Config, Database
from ...errors import StepError
from ...hostside import script
from ...layout import Layout, backup_name
from ...runtime.common import json_or_none, write_file
from ...runtime.leftovers import owner_tag, sweep_leftovers
from ...transport import CommandFailed, Transport
from .backupfiles import metadata_problem
from .db import ROW_COUNTS_SQL, SQLITE_COUNTS_PY, access_denied, option_file, parse_row_counts
from .retention import prune_backups
from .streaming import run_streaming

DUMP_ARGS = ('mysqldump --defaults-extra-file="$1" --single-transaction --quick --routines --triggers --events '
             '--hex-blob --no-tablespaces -- "$2"')
MYSQLDUMP = f'set -o pipefail; umask 077; {DUMP_ARGS} | gzip -1 -n -c > "$3"'
# $4: dumpfilter.py's text; prints the backup's sha256, size and row counts as one JSON line
MYSQLDUMP_STREAM = f'set -o pipefail; umask 077; {DUMP_ARGS} | python3 -c "$4" dump "$3"'
HAS_PYTHON = ["python3", "-c", "import hashlib, json, threading, zlib"]
SQLITE_COPY_PY = script("sqlite_copy.py")
# $1 file, $2 "mysql" or "sqlite": prints sha256 and size, or fails naming what is wrong
VERIFY = script("backup_verify.sh")
# each metadata file of $1: a line "\036<its file name>", then its content
LIST = 'for f in "$1"/*.json; do [ -f "$f" ] && printf "\\036%s\\n" "${f##*/}" && cat "$f" && echo; done; true'


@contextlib.contextmanager
def client_options(t: Transport, layout: Layout, db: Database):
    """A 0600 option file in a 0700 temp dir on the host, removed afterwards: the password never travels
    on a command line. With option_file, it !includes the user's file (which holds the password) and adds
    host, port and user from stages.ini after it. The server's "Access denied" to any client run with it
    comes out as what to fix (db.access_denied)."""
    include = host_option_file(t, db) if db.option_file and not db.password_env else None
    t.run(["mkdir", "-p", "-m", "700", layout.deploy])
    # named by this run (leftovers.py): a killed run's option file is found and removed by the next run
    tmp = t.run(["mktemp", "-d", posixpath.join(layout.deploy, f"cnf.{owner_tag()}.XXXXXX")]).strip()
    try:
        try:
            data = option_file(db, include)
        except ValueError as exc:
            raise StepError(str(exc)) from None
        write_file(t, posixpath.join(tmp, "my.cnf"), data)
        yield posixpath.join(tmp, "my.cnf")
    except (CommandFailed, StepError) as exc:   # a StepError made of a CommandFailed: that one's stderr too
        hint = access_denied(db, "\n".join(str(getattr(e, "stderr", "")) for e in (exc, exc.__context__)) + str(exc))
        if hint is None:
            raise
        raise StepError(f"{t.host}: {hint}") from None
    finally:
        t.call(["rm", "-rf", "--", tmp])


# $1 option_file as written ('~/' = the login's home on the host): prints its path, or fails if unreadable
FIND_OPTION_FILE = 'f=$1; case $f in "~/"*) f=$HOME/${f#??};; esac; [ -f "$f" ] && [ -r "$f" ] && printf %s "$f"'


def host_option_file(t: Transport, db: Database) -> str:
    """The user's option file on the host, which the tool never reads: its password stays on the host.
    Checked first, since the client silently ignores an !include it cannot read."""
    code, out, _ = t.call(["sh", "-c", FIND_OPTION_FILE, "sh", db.option_file])
    if code != 0 or not out:
        raise StepError(f"[database:{db.name}] option_file {db.option_file}: no readable file on {t.host}; "
                        "put the MySQL option file there (mode 0600) or fix option_file")
    return out


def filter_source() -> str:
    """The text of the host-side filter, sent with `python3 -c` (the host needs nothing of this tool)."""
    return (Path(__file__).parent / "dumpfilter.py").read_text()


def streams(t: Transport) -> bool:
    """Can this host run the one-pass filter (python3 with its standard library)?"""
    return t.call(HAS_PYTHON)[0] == 0


def row_counts(t: Transport, db: Database, cnf: str | None = None, path: str | None = None) -> dict[str, int]:
    if db.engine == "sqlite":
        out = t.run(["python3", "-c", SQLITE_COUNTS_PY, path or db.path])
    else:
        out = t.run(["mysql", f"--defaults-extra-file={cnf}", "-N", "-B", "-e", ROW_COUNTS_SQL, "--", db.dbname])
    return parse_row_counts(out)


def list_backups(t: Transport, layout: Layout, db: Database) -> list[dict]:
    """Verified backups of db on this host, oldest first (by the time in their metadata). Metadata that
    names anything but a file of db_backup/ is reported (once a run and host) and ignored."""
    metas, ignored = parse_backup_list(t.run(["sh", "-c", LIST, "sh", layout.backups]), db.name)
    seen = t.__dict__.setdefault("ignored_backups", set())
    for line in ignored:
        if line not in seen:
            seen.add(line)
            print(f"   {t.host}: {layout.backups}/{line}; delete it, or fix it if it is a backup of ours", flush=True)
    return metas


def parse_backup_list(text: str, database: str) -> tuple[list[dict], list[str]]:
    """LIST's output -> (the verified backups of `database`, oldest first; one line for each metadata file
    ignored because of what it names). A file that is not a JSON object is no metadata, silently."""
    found, ignored = [], []
    for chunk in text.split("\036")[1:]:
        filename, _, content = chunk.partition("\n")
        meta = json_or_none(content)
        if not isinstance(meta, dict):
            continue
        problem = metadata_problem(meta, filename)
        if problem:
            ignored.append(f"{filename}: ignored: {problem}")
        elif meta.get("status") == "verified" and meta.get("database") == database \
                and isinstance(meta.get("epoch"), (int, float)):
            found.append(meta)
    return sorted(found, key=lambda m: m["epoch"]), ignored


def newest_backup(t: Transport, layout: Layout, db: Database) -> dict | None:
    backups = list_backups(t, layout, db)
    return backups[-1] if backups else None


def take_backup(session, db: Database, reason: str = "") -> dict:
    """backup:<db>: a verified backup now, on the database's backup host, under that host's lock."""
    host = session.backup_host(db)
    session.lock([host], f"backup:{db.name}")
    return session.hosts.one(host, lambda t: backup_database(t, session.layout, session.config, db, reason))


def backup_database(t: Transport, layout: Layout, config: Config, db: Database, reason: str = "") -> dict:
    """Make, check and record one backup; returns its metadata."""
    now = datetime.now(timezone.utc)
    name = backup_name(config.project.name, db.name, now)
    ext = ".sql.gz" if db.engine == "mysql" else ".sqlite3.gz"
    final = posixpath.join(layout.backups, name + ext)
    partial = posixpath.join(layout.backups, f".{owner_tag()}.{name}{ext}.partial")
    t.run(["sh", "-c", 'umask 077; mkdir -p "$1" && chmod 700 "$1"', "sh", layout.backups])
    sweep_leftovers(t, layout)
    try:
        checked = _dump_mysql(t, layout, db, partial) if db.engine == "mysql" else _copy_sqlite(t, db, partial)
    except Exception as exc:
        t.call(["rm", "-f", "--", partial, partial + ".db"])
        raise StepError(f"backup:{db.name}: {_why(exc)}; no backup was recorded") from None
    t.run(["mv", "-f", "--", partial, final])
    meta = {"name": name, "file": posixpath.basename(final), "database": db.name, "engine": db.engine,
            "source": db.path if db.engine == "sqlite" else f"{db.dbname}@{db.host}:{db.port}",
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "epoch": now.timestamp(), **checked,
            "status": "verified", "host": str(t.host), "reason": reason}
    write_file(t, posixpath.join(layout.backups, name + ".json"), json.dumps(meta, sort_keys=True).encode())
    prune_backups(t, layout, list_backups(t, layout, db), config.project.keep_backups,
                  config.project.keep_releases)
    return meta


def _why(exc: Exception) -> str:
    """A failed dump's error: the filter's verdict, and mysqldump's own line when it said one."""
    if isinstance(exc, CommandFailed):
        lines = [ln.strip() for ln in exc.stderr.splitlines() if ln.strip()]
        if len(lines) > 1:
            return f"{exc}; {lines[0]}" if lines[0] not in str(exc) else str(exc)
    return str(exc)


def _dump_mysql(t: Transport, layout: Layout, db: Database, partial: str) -> dict:
    """Dump, compress and check. Returns sha256, size and the row counts (tables; without the filter also
    tables_after: COUNT(*) before and after the dump, which a restore's counts must lie between)."""
    with client_options(t, layout, db) as cnf:
        if streams(t):
            out = run_streaming(t, ["bash", "-c", MYSQLDUMP_STREAM, "bash", cnf, db.dbname, partial,
                                    filter_source()], f"backup:{db.name}")
            got = json.loads(out.strip().splitlines()[-1])
            return {"sha256": got["sha256"], "size": got["size"], "sql_bytes": got["sql_bytes"],
                    "tables": got["tables"], "counted": "dump"}
        before = row_counts(t, db, cnf)
        t.run(["bash", "-c", MYSQLDUMP, "bash", cnf, db.dbname, partial])
        after = row_counts(t, db, cnf)
    sha, size = t.run(["sh", "-c", VERIFY, "sh", partial, db.engine]).split()
    return {"sha256": sha, "size": int(size), "tables": before, "tables_after": after, "counted": "count"}


def _copy_sqlite(t: Transport, db: Database, partial: str) -> dict:
    copy = partial + ".db"
    t.run(["python3", "-c", SQLITE_COPY_PY, db.path, copy])
    counts = row_counts(t, db, path=copy)
    t.run(["sh", "-c", 'umask 077; gzip -n -c "$1" > "$2" && rm -f "$1"', "sh", copy, partial])
    sha, size = t.run(["sh", "-c", VERIFY, "sh", partial, db.engine]).split()
    return {"sha256": sha, "size": int(size), "tables": counts, "tables_after": counts, "counted": "count"}
