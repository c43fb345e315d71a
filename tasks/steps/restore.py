"""restore: a database refreshed from a verified backup (sha256 checked first, row counts checked after).

Used by restore:<stage> (the test database := the newest backup of production) and, when configured, to
put production back after a failed migration.
"""
from __future__ import annotations

import posixpath
import tempfile
from pathlib import Path

from ..config import Config, Database
from ..db import counts_mismatch
from ..layout import Layout
from ..transport import Transport
from .backup import client_options, row_counts
from .common import StepError

MYSQL_LOAD = 'set -o pipefail; gunzip -c "$1" | mysql --defaults-extra-file="$2" -- "$3"'
SQLITE_LOAD = ('set -e; umask 077; mkdir -p "$(dirname "$2")"; gunzip -c "$1" > "$2.restore"; '
               'python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); '
               'sys.exit(c.execute(\'PRAGMA integrity_check\').fetchone()[0] != \'ok\')" "$2.restore"')


def stage_backup_file(src: Transport, dst: Transport, config: Config, meta: dict) -> tuple[str, bool]:
    """The backup's path on dst; copied through this machine when it lives on another host.
    Returns (path, is_temporary_copy)."""
    layout = Layout(config.project.deploy_root)
    path = posixpath.join(layout.backups, meta["file"])
    if src.host == dst.host:
        return path, False
    incoming = posixpath.join(layout.deploy, "incoming", meta["file"])
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / meta["file"]
        src.get(path, local)
        dst.run(["mkdir", "-p", "-m", "700", posixpath.dirname(incoming)])
        dst.put(local, incoming)
    return incoming, True


def restore_backup(t: Transport, config: Config, db: Database, meta: dict, path: str) -> None:
    """Load the backup at path (on t) into db, replacing what it held."""
    layout = Layout(config.project.deploy_root)
    digest = t.run(["sha256sum", "--", path]).split()[0]
    if digest != meta["sha256"]:
        raise StepError(f"{t.host}: backup {meta['file']} has sha256 {digest[:12]}, its metadata says "
                        f"{meta['sha256'][:12]}; it is damaged: take a new backup (doit backup:{meta['database']})")
    if db.engine == "mysql":
        with client_options(t, layout, db) as cnf:
            name = "`" + db.dbname.replace("`", "``") + "`"
            t.run(["mysql", f"--defaults-extra-file={cnf}", "-e", f"DROP DATABASE IF EXISTS {name}; "
                   f"CREATE DATABASE {name}"])
            t.run(["bash", "-c", MYSQL_LOAD, "bash", path, cnf, db.dbname])
            actual = row_counts(t, db, cnf)
    else:
        t.run(["sh", "-c", SQLITE_LOAD, "sh", path, db.path])
        actual = row_counts(t, db, path=db.path + ".restore")
    problems = counts_mismatch(meta["tables"], meta.get("tables_after"), actual)
    if problems:
        raise StepError(f"{t.host}: restore of {meta['file']} into {db.name} does not match the backup's "
                        f"row counts ({'; '.join(problems[:5])}); the database is not usable")
    if db.engine == "sqlite":
        t.run(["mv", "-f", "--", db.path + ".restore", db.path])
