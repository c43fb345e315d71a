"""restore: a database refreshed from a verified backup (sha256 checked first, row counts checked after).

Each engine loads a backup its own way (tasks/engines/); for MySQL/MariaDB:
with python3 on the host, one process reads the file: it hashes it first (about 0.1 s for 60 MB: nothing
reaches the database when the file is damaged), then decompresses it straight into `mysql`, after the
`DROP DATABASE; CREATE DATABASE; USE` it sends itself, so the database is dropped only once the file is
known good. A file that then ends early (no gzip end, no completion line) fails the pipeline: the database is
left half-loaded, the step fails, and the restore is not recorded.

Used by restore:<stage> (the test database := the newest backup of production: guarded, right before the
drop, by asking the servers themselves that the target is neither the source nor a live database; then
recorded by a marker on the backup host, removed first and written last) and, when configured, to put
production back after a failed migration.
"""
from __future__ import annotations

import json
import posixpath
import tempfile
from pathlib import Path

from ... import failpoints
from ...config import Database, Stage
from ...engines import engine_for
from ...engines.base import ProtectedTarget, counts_mismatch
from ...errors import StepError
from ...layout import Layout
from ...runtime.common import json_or_none, write_file
from ...runtime.leftovers import owner_tag, sweep_leftovers
from ...transport import Transport
from .backupfiles import backup_path
from .dbguard import refuse_protected_target, refused


def restored(session, db: Database) -> dict | None:
    """The marker of db's last restore: {"backup": name, "release": id, "fresh": bool}, or None. "fresh":
    nothing has migrated the copy since (a rehearsal sets it false before its first change)."""
    argv = marker_argv(session.layout, db)

    def read(t: Transport):
        code, out, _ = t.call_kept(argv)    # restore:<stage>'s check: its read rode with the lock's take
        return json_or_none(out) if code == 0 else None
    found = session.hosts.one(session.backup_host(db), read)
    return found if isinstance(found, dict) else None


def marker_argv(layout: Layout, db: Database) -> list[str]:
    """The read of db's restore marker (restored)."""
    return ["cat", "--", layout.db_marker(db.name)]


def holds(marker: dict | None, backup: str, rid: str) -> bool:
    """Does the marker say the database holds this backup, restored for this release?"""
    return bool(marker) and marker.get("backup") == backup and marker.get("release") == rid


def is_fresh(marker: dict | None, rid: str) -> bool:
    """Restored for this release and not migrated since (a marker of an older version says nothing: no)."""
    return bool(marker) and marker.get("release") == rid and marker.get("fresh") is True


def _write_marker(session, db: Database, t: Transport, marker: dict) -> None:
    write_file(t, session.layout.db_marker(db.name), json.dumps(marker, sort_keys=True).encode())


def mark_rehearsing(session, db: Database, marker: dict | None) -> None:
    """Before a rehearsal's first change to the copy: it is no longer a fresh copy of its backup."""
    if marker and marker.get("fresh") is not False:
        session.hosts.one(session.backup_host(db), lambda t: _write_marker(session, db, t, {**marker, "fresh": False}))


def restore_stage(session, stage: Stage, newest: dict, rid: str) -> str:
    """restore:<stage>: the stage's database := the backup `newest` of its restore_from database. Returns
    which backup, and why this one now."""
    src, db = session.config.databases[stage.restore_from], session.config.stage_database(stage)
    src_host, dst_host = session.backup_host(src), session.backup_host(db)
    marker = session.layout.db_marker(db.name)
    before = restored(session, db)

    def load(dst: Transport):
        # the marker goes first: a restore that fails half-way is never taken for a done one
        dst.run(["rm", "-f", "--", marker])
        path, temporary = stage_backup_file(session.connections.get(src_host), dst, session.layout, newest)
        try:
            protected = _guard_target(session, stage, db)
            failpoints.hit("restore.before_load", dst.host)
            restore_backup(dst, session.layout, db, newest, path, protected=protected, stage=stage.name)
        finally:
            if temporary:
                dst.call(["rm", "-f", "--", path])
        _write_marker(session, db, dst, {"backup": newest["name"], "release": rid, "fresh": True})
    session.hosts.one(dst_host, load)
    return f"{db.name} := {newest['file']} ({why_restored(newest, src.name, before, rid)})"


def why_restored(newest: dict, source: str, before: dict | None, rid: str) -> str:
    """Pure: which backup a restore loaded and why now (the line restore:<stage> prints)."""
    reason = f", {newest['reason']}" if newest.get("reason") else ""
    what = f"the newest verified backup of {source}, taken {newest.get('time', '?')[:19]}Z{reason}"
    if not before or not before.get("backup"):
        return f"{what}; the database held no restore of ours"
    if before.get("backup") != newest["name"]:
        return f"{what}; it held the older {before['backup']}"
    if before.get("release") != rid:
        return f"{what}; it held it migrated by {before.get('release')}, and {rid} rehearses on a fresh copy"
    return f"{what}; a rehearsal had begun on the copy"


def restore_in_place(session, db: Database, meta: dict) -> None:
    """db := one of its own backups (production after a failed migration). On MySQL/MariaDB its lock waits
    are bounded like the migration's (all its attempts' worth): the transaction that held the migration up
    would hold the restore's DROP up for the server's lock_wait_timeout, a day; the caller's record says the
    restore is unfinished, so the next run finishes it."""
    path = backup_path(session.layout, meta)
    wait = db.migration_lock_timeout * (db.migration_lock_retries + 1)
    session.hosts.one(session.backup_host(db),
                      lambda t: restore_backup(t, session.layout, db, meta, path, lock_wait=wait))


def _guard_target(session, stage: Stage, db: Database) -> list[tuple[Database, tuple]]:
    """Ask the servers, right before the drop, that db is neither the source nor a live stage's database.
    An engine that guards_in_load asks db's own server in the DROP's session instead (the check and the
    drop in one session, and one query fewer): the protected databases and their identities, for it."""
    config = session.config
    live = [s.database for s in config.stages.values() if s.database and not s.restore_from]
    names = [n for n in dict.fromkeys([stage.restore_from, *live]) if n != db.name]

    def identity(d: Database):
        return session.hosts.one(session.backup_host(d),
                                 lambda t: engine_for(d).server_identity(t, session.layout, d))
    protected = [(config.databases[n], identity(config.databases[n])) for n in names]
    if engine_for(db).guards_in_load:
        return protected
    refuse_protected_target(stage.name, db, identity(db), protected)
    return []


def stage_backup_file(src: Transport, dst: Transport, layout: Layout, meta: dict) -> tuple[str, bool]:
    """The backup's path on dst; copied through this machine when it lives on another host.
    Returns (path, is_temporary_copy)."""
    path = backup_path(layout, meta)
    if src.host == dst.host:
        return path, False
    sweep_leftovers(dst, layout)
    # named by this run (leftovers.py): a killed run's copy is found and removed by the next run
    incoming = posixpath.join(layout.incoming, f"{owner_tag()}.{meta['file']}")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / meta["file"]
        src.get(path, local)
        dst.run(["mkdir", "-p", "-m", "700", posixpath.dirname(incoming)])
        dst.put(local, incoming)
    return incoming, True


def restore_backup(t: Transport, layout: Layout, db: Database, meta: dict, path: str,
                   lock_wait: int | None = None, protected: list[tuple[Database, tuple]] = (),
                   stage: str = "") -> None:
    """Load the backup at path (on t) into db, replacing what it held; lock_wait: the most seconds its
    session waits for a lock (MySQL/MariaDB), else the server's own setting. protected (restore:<stage>'s,
    where the engine guards_in_load): the databases, with their identities, the load refuses to drop."""
    engine = engine_for(db)
    try:
        actual = engine.load_backup(t, layout, db, meta, path, lock_wait, [ident for _, ident in protected])
    except ProtectedTarget as exc:
        other, ident = protected[exc.index]
        raise refused(stage, db, other, ident) from None
    problems = counts_mismatch(meta["tables"], meta.get("tables_after"), actual)
    if problems:
        raise StepError(f"{t.host}: restore of {meta['file']} into {db.name} does not match the backup's "
                        f"row counts ({'; '.join(problems[:5])}); the database is not usable")
    engine.put_in_place(t, db)
