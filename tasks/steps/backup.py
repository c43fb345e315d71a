"""backup: a verified backup of a database, made on its backup host into db_backup/ (mode 0600).

A backup counts only when complete and checked: mysqldump's completion line (sqlite: integrity_check),
gzip -t and sha256. It is written under a .partial name and its metadata file is written last: a dump that
died half-way has no metadata and is never listed. The newest is chosen by the metadata's time.
"""
from __future__ import annotations

import contextlib
import json
import posixpath
from datetime import datetime, timezone

from ..config import Config, Database
from ..db import ROW_COUNTS_SQL, SQLITE_COUNTS_PY, option_file, parse_row_counts
from ..layout import Layout, backup_name
from ..transport import Transport
from .common import StepError, write_file

MYSQLDUMP = ('set -o pipefail; umask 077; mysqldump --defaults-extra-file="$1" --single-transaction --quick '
             '--routines --triggers --events --hex-blob --no-tablespaces -- "$2" | gzip -n -c > "$3"')
SQLITE_COPY_PY = r'''
import os, sqlite3, sys
if not os.path.isfile(sys.argv[1]):
    sys.exit("sqlite database %s does not exist" % sys.argv[1])
src = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
dst = sqlite3.connect(sys.argv[2])
src.backup(dst)
ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
dst.close()
sys.exit(0 if ok == "ok" else "integrity_check: " + ok)
'''
# $1 file, $2 "mysql" or "sqlite": prints sha256 and size, or fails naming what is wrong
VERIFY = r'''set -e
gzip -t "$1" || { echo "gzip integrity check failed" >&2; exit 4; }
if [ "$2" = mysql ]; then
  last=$(gzip -dc "$1" | tail -n 1)
  case "$last" in "-- Dump completed"*) ;; *) echo "no completion line: the dump is incomplete" >&2; exit 4;; esac
fi
sha256sum "$1" | cut -d' ' -f1; stat -c %s "$1"'''
LIST = 'for f in "$1"/*.json; do [ -f "$f" ] && cat "$f" && echo; done; true'


@contextlib.contextmanager
def client_options(t: Transport, layout: Layout, db: Database):
    """A 0600 option file in a 0700 temp dir on the host, removed afterwards: the password never travels
    on a command line. With option_file, it !includes the user's file (which holds the password) and adds
    host, port and user from stages.ini after it."""
    include = host_option_file(t, db) if db.option_file and not db.password_env else None
    t.run(["mkdir", "-p", "-m", "700", layout.deploy])
    tmp = t.run(["mktemp", "-d", posixpath.join(layout.deploy, "cnf.XXXXXX")]).strip()
    try:
        try:
            data = option_file(db, include)
        except ValueError as exc:
            raise StepError(str(exc)) from None
        write_file(t, posixpath.join(tmp, "my.cnf"), data)
        yield posixpath.join(tmp, "my.cnf")
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


def row_counts(t: Transport, db: Database, cnf: str | None = None, path: str | None = None) -> dict[str, int]:
    if db.engine == "sqlite":
        out = t.run(["python3", "-c", SQLITE_COUNTS_PY, path or db.path])
    else:
        out = t.run(["mysql", f"--defaults-extra-file={cnf}", "-N", "-B", "-e", ROW_COUNTS_SQL, "--", db.dbname])
    return parse_row_counts(out)


def list_backups(t: Transport, layout: Layout, db: Database) -> list[dict]:
    """Verified backups of db on this host, oldest first (by the time in their metadata)."""
    out = t.run(["sh", "-c", LIST, "sh", layout.backups])
    found = []
    for line in out.splitlines():
        try:
            meta = json.loads(line)
        except ValueError:
            continue
        if meta.get("status") == "verified" and meta.get("database") == db.name:
            found.append(meta)
    return sorted(found, key=lambda m: m["epoch"])


def newest_backup(t: Transport, layout: Layout, db: Database) -> dict | None:
    backups = list_backups(t, layout, db)
    return backups[-1] if backups else None


def backup_database(t: Transport, config: Config, db: Database, reason: str = "") -> dict:
    """Make, check and record one backup; returns its metadata."""
    layout = Layout(config.project.deploy_root)
    now = datetime.now(timezone.utc)
    name = backup_name(config.project.name, db.name, now)
    ext = ".sql.gz" if db.engine == "mysql" else ".sqlite3.gz"
    final = posixpath.join(layout.backups, name + ext)
    partial = posixpath.join(layout.backups, "." + name + ext + ".partial")
    t.run(["sh", "-c", 'umask 077; mkdir -p "$1" && chmod 700 "$1" && '
                       'find "$1" -maxdepth 1 -name ".*.partial" -mmin +360 -delete', "sh", layout.backups])
    try:
        if db.engine == "mysql":
            with client_options(t, layout, db) as cnf:
                before = row_counts(t, db, cnf)
                t.run(["bash", "-c", MYSQLDUMP, "bash", cnf, db.dbname, partial])
                after = row_counts(t, db, cnf)
        else:
            copy = partial + ".db"
            t.run(["python3", "-c", SQLITE_COPY_PY, db.path, copy])
            before = after = row_counts(t, db, path=copy)
            t.run(["sh", "-c", 'umask 077; gzip -n -c "$1" > "$2" && rm -f "$1"', "sh", copy, partial])
        sha, size = t.run(["sh", "-c", VERIFY, "sh", partial, db.engine]).split()
    except Exception as exc:
        t.call(["rm", "-f", "--", partial, partial + ".db"])
        raise StepError(f"backup:{db.name}: {exc}; no backup was recorded") from None
    t.run(["mv", "-f", "--", partial, final])
    meta = {"name": name, "file": posixpath.basename(final), "database": db.name, "engine": db.engine,
            "source": db.path if db.engine == "sqlite" else f"{db.dbname}@{db.host}:{db.port}",
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "epoch": now.timestamp(), "sha256": sha,
            "size": int(size), "tables": before, "tables_after": after, "status": "verified",
            "host": str(t.host), "reason": reason}
    write_file(t, posixpath.join(layout.backups, name + ".json"), json.dumps(meta, sort_keys=True).encode())
    prune_backups(t, layout, db, config.project.keep_backups)
    return meta


def prune_backups(t: Transport, layout: Layout, db: Database, keep: int) -> None:
    """Keep the newest `keep` verified backups of db; metadata goes first, so none points at nothing."""
    old = list_backups(t, layout, db)[:-keep]
    for meta in old:
        t.run(["rm", "-f", "--", posixpath.join(layout.backups, meta["name"] + ".json"),
               posixpath.join(layout.backups, meta["file"])])
