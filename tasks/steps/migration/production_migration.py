"""migrate:<stage> on a database that is not a throwaway copy (the stage has no restore_from): production.

Its last effect is the verified "after" backup, so the node is done only when its record says so
(migration_record.py, on the database's backup host):
  1. the intent, written before the first change: stage, release, database, this run's token;
  2. the "before" backup, verified, named in the record before the migration starts;
  3. the migration, with bounded lock waits (migrate_bounded.py);
  4. the "after" backup, verified; then the outcome.
A migration that failed is restored from the "before" backup when restore_on_failed_migration says so; the
record says "restoring" before the restore begins (it drops and reloads the database), and a run that finds
it so finishes that restore before anything else: a half-loaded database is never migrated on.
A run that finds an intent without an outcome for its release finishes it instead of starting over. It
never takes a second "before" backup (that would be a dump of a half-migrated database): it takes the
missing "after" backup when nothing is pending (the earlier run's migration had completed), or continues
the migration first, and says which. An unfinished intent for another release is closed as abandoned,
naming its "before" backup, the last one taken before that release's changes.
"""
from __future__ import annotations

from ... import failpoints
from ...config import Database, Stage
from ...engines import engine_for
from ...errors import StepError
from ...session import Session
from ..database.backup import list_backups, take_backup
from ..database.restore import restore_in_place
from .migrate import is_migrated
from .migrate_bounded import LockGaveUp, run_bounded_migrations
from .migration_record import adoptable, backup_ref, is_open, new_intent, now, pair, read_record, write_record
from .rehearsal_guard import guard_production


def unfinished(session: Session, stage: Stage) -> bool:
    """Does an earlier run's migration of this stage's database lack its outcome (its "after" backup)?"""
    return is_open(_record(session, session.config.stage_database(stage), stage))


def migration_backups(session: Session, stage: Stage, rid: str) -> list[str]:
    """The backups taken around this release's migration of the stage's database (for the release log):
    the true pair its record names; for a migration made before records were kept, the last two by reason."""
    db = session.config.stage_database(stage)
    if not db or stage.restore_from:
        return []
    recorded = pair(_record(session, db, stage), rid)
    if recorded is not None:
        return recorded
    tag = f"migrate:{stage.name} {rid}"
    return [m["file"] for m in _backups(session, db) if m.get("reason", "").endswith(tag)][-2:]


def migrate_production(session: Session, stage: Stage, rid: str) -> str:
    """Guarded by the rehearsal (invariant 8) when a migration begins, never when one resumes: the run that
    began it was judged, and a half-applied plan would look stale to the guard. Returns the summary."""
    db = session.config.stage_database(stage)
    session.lock([stage.primary, session.backup_host(db)], f"migrate:{stage.name}")
    record = _open_record(session, db, stage, rid)
    resumed, accepted = record is not None and bool(record.get("before")), ""
    migrated = session.hosts.one(stage.primary,
                                 lambda t: is_migrated(t, session.layout, session.config, stage, rid))
    if not resumed:
        if migrated:
            if record is not None:  # begun, nothing changed, and nothing is pending now: no migration of ours
                _close(session, db, record, "abandoned")
            return "nothing pending"
        record, accepted = _begin(session, db, stage, rid, record)
    before, after = _between_backups(session, db, stage, record, migrated, resumed)
    pair_text = f"before {before['file']}, after {after['file']}"
    if not resumed:
        return f"migrated{accepted}; backups {pair_text}"
    how = ("its migration had completed: took the missing after backup" if migrated
           else "continued its migration, then took the after backup")
    return (f"finished the migration of {rid} an earlier run left unfinished: {how}; backups {pair_text} "
            "(before: taken before the first attempt)")


def _open_record(session: Session, db: Database, stage: Stage, rid: str) -> dict | None:
    """The record of an earlier run's migration of rid that lacks its outcome, else None. An unfinished
    restore is finished first (and stops the run); an open intent for another release is closed."""
    record = _record(session, db, stage)
    if not is_open(record):
        return None
    if record.get("restoring"):
        _finish_restore(session, db, stage, record)
    if record["release"] != rid:
        _abandon(session, db, stage, record, rid)
        return None
    return record


def _begin(session: Session, db: Database, stage: Stage, rid: str, record: dict | None) -> tuple[dict, str]:
    """A migration that begins: judged by the rehearsal guard, then its intent (or the open one that changed
    nothing yet). Returns the record and what the guard accepted."""
    accepted = guard_production(session, stage, rid)
    return record or new_intent(stage.name, rid, db.name, session.token), accepted


def _between_backups(session: Session, db: Database, stage: Stage, record: dict, migrated: bool,
                     resumed: bool) -> tuple[dict, dict]:
    """The intent saved, the "before" backup, the migration (unless nothing is pending), the "after" backup
    and the outcome, each recorded as it happens. Returns the two backups' metadata."""
    record["runs"] = [*record.get("runs", []), session.token]
    _save(session, db, record)  # the intent: before the first change
    before = _before(session, db, stage, record)
    failpoints.hit("migrate.after_backup_before")
    if not migrated:
        _migrate(session, db, stage, record, before, resumed)
        failpoints.hit("migrate.after_migrate")
    failpoints.hit("migrate.before_backup_after")
    return before, _after(session, db, stage, record, migrated)


def _before(session, db: Database, stage: Stage, record: dict) -> dict:
    """The verified backup taken before the first attempt: the one the record names, else one a dead run
    took for this intent but did not record, else a new one. Its full metadata (a restore needs it)."""
    metas = _backups(session, db)
    tag = f"before migrate:{stage.name} {record['release']}"
    named = record.get("before")
    if named:
        meta = next((m for m in metas if m["name"] == named["name"]), None)
        if meta:
            return meta
        _say(stage, f"the backup {named['file']} an earlier run took before its attempt is gone from "
                    f"{session.backup_host(db)}; taking a new one of the database as it is now (maybe half-migrated)")
    meta = (None if named else adoptable(metas, tag, record["epoch"])) or take_backup(session, db, tag)
    record["before"] = backup_ref(meta)
    _save(session, db, record)
    return meta


def _migrate(session, db: Database, stage: Stage, record: dict, before: dict, resumed: bool) -> None:
    rid = record["release"]
    try:
        session.hosts.one(stage.primary,
                          lambda t: run_bounded_migrations(t, session.layout, session.config, stage, rid))
    except LockGaveUp as exc:
        # the record says why this attempt stopped and what of it was applied (the step's error line)
        record["gave_up"] = {"time": now()[0], "why": str(exc)}
        _save(session, db, record)
        if exc.changed:
            _failed(session, db, stage, exc, record, before, resumed)
        # nothing changed: a restore would only lose the writes made since the backup (and would itself
        # wait behind the same lock); the record stays open, so the next run goes on from here
        kept = f"; {db.name} was left as it was, not restored" if db.restore_on_failed_migration else ""
        raise StepError(f"{exc}{kept}") from None
    except StepError as exc:
        _failed(session, db, stage, exc, record, before, resumed)


def _failed(session, db: Database, stage: Stage, exc: StepError, record: dict, before: dict,
            resumed: bool) -> None:
    """A migration that failed after it may have changed the database: restored, or named half-migrated.
    One that changed nothing (the runner says so: migrate_bounded sets exc.changed), in a first attempt,
    is not restored: a restore would only lose the writes made since the backup."""
    untouched = getattr(exc, "changed", True) is False and not resumed
    if untouched:
        record["failed"] = {"time": now()[0], "why": str(exc), "half_applied": False}
        _save(session, db, record)
        kept = f"; {db.name} was left as it was, not restored" if db.restore_on_failed_migration else ""
        raise StepError(f"{exc}. It changed nothing in {db.name} (no migration of this run was applied; the "
                        f"backup taken just before it: {session.backup_host(db)}:{session.layout.backups}/"
                        f"{before['file']}); fix the cause and run again{kept}") from None
    if db.restore_on_failed_migration:
        record["restoring"] = now()[0]   # from here on, the database may be half-loaded until the end
        _save(session, db, record)
        failpoints.hit("migrate.before_restore")
        try:
            restore_in_place(session, db, before)
        except StepError as failed:
            raise StepError(f"{exc}. Restoring {db.name} from {before['file']} (restore_on_failed_migration = "
                            f"yes) failed too: {failed}; doit {stage.chain_task} finishes the restore once that is "
                            f"fixed") from None
        _close(session, db, record, "restored")
        raise StepError(f"{exc}. {db.name} was restored from {before['file']} "
                        f"(restore_on_failed_migration = yes)") from None
    when = "the first attempt" if resumed else "it"
    where = f"{session.backup_host(db)}:{session.layout.backups}/{before['file']} (taken just before {when})"
    if engine_for(db).transactional_migrations:
        # the record says so too: no migration was left half-applied, so the next run may simply go on
        record["failed"] = {"time": now()[0], "why": str(exc), "half_applied": False}
        _save(session, db, record)
        raise StepError(f"{exc}. Each migration is one transaction on {db.engine}: the failed one left nothing "
                        f"half-applied in {db.name} (the ones before it in this run stay applied, as "
                        f"django_migrations says); fix the cause and run again, or to go back restore it from "
                        f"{where}") from None
    raise StepError(f"{exc}. The database {db.name} may be half-migrated: restore it from {where}, or fix the "
                    "cause and run again: the next run goes on from there") from None


def _finish_restore(session, db: Database, stage: Stage, record: dict) -> None:
    """An earlier run's migration failed and its restore from the "before" backup did not end (the run died,
    or the restore failed): the database may be half-loaded. Finish the restore, close the record, stop."""
    file, where = record["before"]["file"], f"{session.backup_host(db)}:{session.layout.backups}"
    meta = next((m for m in _backups(session, db) if m["name"] == record["before"]["name"]), None)
    if meta is None:
        raise StepError(f"migrate:{stage.name}: an earlier run's restore of {db.name} from {file} (after its "
                        f"migration of {record['release']} failed) did not finish, and {file} is gone from "
                        f"{where}: {db.name} may be half-loaded; restore it by hand from a backup you trust, then "
                        f"remove {session.backup_host(db)}:{session.layout.migration(stage.name)}")
    _say(stage, f"an earlier run's migration of {record['release']} failed and its restore of {db.name} from "
                f"{file} did not finish; restoring it now")
    restore_in_place(session, db, meta)
    _close(session, db, record, "restored")
    raise StepError(f"migrate:{stage.name}: an earlier run's migration of {record['release']} failed and left "
                    f"the restore of {db.name} unfinished; it is finished now: {db.name} was restored from {file} "
                    f"(taken before that migration). Nothing was migrated: fix the migration's cause, then run "
                    f"again")


def _after(session, db: Database, stage: Stage, record: dict, migrated_before: bool) -> dict:
    """The verified "after" backup, then the outcome: the migration's last effect. A dead run's unrecorded
    after backup counts only when this run migrated nothing (else it shows an older state)."""
    tag = f"after migrate:{stage.name} {record['release']}"
    after = (adoptable(_backups(session, db), tag, record["epoch"]) if migrated_before else None) \
        or take_backup(session, db, tag)
    record.update(after=backup_ref(after), outcome="migrated", finished=now()[0])
    _save(session, db, record)
    return after


def _record(session, db: Database, stage: Stage) -> dict | None:
    return session.hosts.one(session.backup_host(db), lambda t: read_record(t, session.layout, stage.name))


def _save(session, db: Database, record: dict) -> None:
    session.hosts.one(session.backup_host(db), lambda t: write_record(t, session.layout, record))


def _backups(session, db: Database) -> list[dict]:
    return session.hosts.one(session.backup_host(db), lambda t: list_backups(t, session.layout, db))


def _close(session, db: Database, record: dict, outcome: str) -> None:
    record.update(outcome=outcome, finished=now()[0])
    _save(session, db, record)


def _abandon(session, db: Database, stage: Stage, record: dict, rid: str) -> None:
    _close(session, db, record, "abandoned")
    before = (record.get("before") or {}).get("file")
    since = f" (its before backup: {before})" if before else " (before any change)"
    _say(stage, f"an earlier run's migration of {record['release']} on database {db.name} was never finished"
                f"{since}; {rid} is migrated from the database as it is now")


def _say(stage: Stage, text: str) -> None:
    """Printed at once, not returned: the run may stop before its summary (the guard may refuse)."""
    print(f"   migrate:{stage.name}: {text}", flush=True)
