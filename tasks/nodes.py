"""The nodes of the graph: for each, a check of the real state (`*_done`) and the work (`run_*`).

Each node is all or nothing across the stage's hosts. Nothing here knows doit: doit_tasks.py wires these
functions into tasks; a check answers True/False, a run returns a short summary or raises StepError.
"""
from __future__ import annotations

import json
import posixpath
import time

from . import failpoints
from .config import Database, Stage
from .plan import Plan
from .progress import Progress
from .rehearsal import refusal, text_table
from .rollout import read_switch_state, rollout
from .steps import backup as backup_step
from .steps import build as build_step
from .steps import dbguard
from .steps import migrate as migrate_step
from .steps import rehearsal as rehearsal_step
from .steps import restore as restore_step
from .steps.archive import local_release
from .steps.common import StepError, read_text, write_file
from .steps.switch import release_of
from .steps.upload import has_release, upload_release


# -- archive ---------------------------------------------------------------------------------------
def archive_done(plan: Plan) -> bool:
    return plan.built_release() is not None


def run_archive(plan: Plan) -> str:
    release = plan.make_archive()
    return f"{release.id} sha256 {release.sha256[:12]}"


# -- backup:<db> (fresh enough) --------------------------------------------------------------------
def newest_backup(plan: Plan, db: Database) -> dict | None:
    return plan.on_host(plan.backup_host(db), lambda t: backup_step.newest_backup(t, plan.layout, db))


def backup_done(plan: Plan, db: Database) -> bool:
    newest = newest_backup(plan, db)
    return bool(newest) and time.time() - newest["epoch"] < plan.config.project.backup_max_age


def run_backup(plan: Plan, db: Database, reason: str = "") -> dict:
    host = plan.backup_host(db)
    plan.lock([host], f"backup:{db.name}")
    return plan.on_host(host, lambda t: backup_step.backup_database(t, plan.config, db, reason))


# -- upload:<stage>, build:<stage> -----------------------------------------------------------------
def upload_done(plan: Plan, stage: Stage) -> bool:
    release = plan.release(stage)
    return all(plan.on_hosts(stage.hosts, lambda t: has_release(t, plan.layout, release), "upload"))


def run_upload(plan: Plan, stage: Stage) -> str:
    release = plan.release(stage)
    if local_release(plan.config.build_dir, release.id) is None:
        raise StepError(f"upload:{stage.name}: build/{release.id}.tar.gz is missing or damaged; run doit archive")
    what = f"upload:{stage.name}"
    plan.lock(stage.hosts, what)
    size = (plan.config.build_dir / f"{release.id}.tar.gz").stat().st_size
    with Progress(what, len(stage.hosts)) as progress:
        source = None
        if plan.config.project.store:
            from .store import store_source  # imports boto3: only for runs that use a store
            source = store_source(plan.config, release, what, progress)

        def one(t):
            if upload_release(t, plan.layout, release, plan.config.build_dir, source):
                progress.sent(size)
        plan.on_hosts(stage.hosts, one, what, progress)
    via = f" (through {plan.config.project.store.url})" if source else ""
    return f"{release.id} on {len(stage.hosts)} host(s){via}"


def build_done(plan: Plan, stage: Stage) -> bool:
    release = plan.release(stage)
    return all(plan.on_hosts(stage.hosts, lambda t: build_step.is_built(t, plan.config, stage, release), "build"))


def run_build(plan: Plan, stage: Stage) -> str:
    release = plan.release(stage)
    plan.lock(stage.hosts, f"build:{stage.name}")

    def one(t):
        if not build_step.is_built(t, plan.config, stage, release):
            build_step.build_release(t, plan.config, stage, release, fresh_stage_dirs=bool(stage.promote_from))
    with Progress(f"build:{stage.name}", len(stage.hosts)) as progress:
        plan.on_hosts(stage.hosts, one, f"build:{stage.name}", progress)
    return f"{release.id} ready on {len(stage.hosts)} host(s)"


# -- restore:<stage> -------------------------------------------------------------------------------
def _restore_state(plan: Plan, stage: Stage) -> tuple[dict | None, dict | None, str]:
    src = plan.config.databases[stage.restore_from]
    newest = newest_backup(plan, src)
    db = plan.config.stage_database(stage)
    text = plan.on_host(plan.backup_host(db), lambda t: read_text(t, plan.layout.db_marker(db.name)))
    try:
        marker = json.loads(text) if text else None
    except ValueError:
        marker = None
    return newest, marker, plan.release(stage).id


def restore_done(plan: Plan, stage: Stage) -> bool:
    newest, marker, rid = _restore_state(plan, stage)
    return bool(newest and marker) and marker == {"backup": newest["name"], "release": rid}


def run_restore(plan: Plan, stage: Stage) -> str:
    src, db = plan.config.databases[stage.restore_from], plan.config.stage_database(stage)
    src_host, dst_host = plan.backup_host(src), plan.backup_host(db)
    plan.lock([dst_host, *stage.hosts], f"restore:{stage.name}")
    newest, _, rid = _restore_state(plan, stage)
    if not newest:
        raise StepError(f"restore:{stage.name}: there is no verified backup of {src.name} on {src_host}; "
                        f"run doit backup:{src.name}")

    def load(dst):
        # the marker goes first: a restore that fails half-way is never taken for a done one
        dst.run(["rm", "-f", "--", plan.layout.db_marker(db.name)])
        path, temporary = restore_step.stage_backup_file(plan.connections.get(src_host), dst, plan.config, newest)
        try:
            _guard_restore_target(plan, stage, db)
            failpoints.hit("restore.before_load", dst.host)
            restore_step.restore_backup(dst, plan.config, db, newest, path)
        finally:
            if temporary:
                dst.call(["rm", "-f", "--", path])
        marker = json.dumps({"backup": newest["name"], "release": rid}, sort_keys=True).encode()
        write_file(dst, plan.layout.db_marker(db.name), marker)
    plan.on_host(dst_host, load)
    return f"{db.name} := {newest['file']}"


def _guard_restore_target(plan: Plan, stage: Stage, db: Database) -> None:
    """Ask the servers, right before the drop, that db is neither the source nor a live stage's database."""
    live = [s.database for s in plan.config.stages.values() if s.database and not s.restore_from]
    names = [n for n in dict.fromkeys([stage.restore_from, *live]) if n != db.name]

    def identity(d: Database):
        return plan.on_host(plan.backup_host(d), lambda t: dbguard.server_identity(t, plan.layout, d))
    dbguard.refuse_protected_target(stage.name, db, identity(db),
                                    [(plan.config.databases[n], identity(plan.config.databases[n])) for n in names])


# -- migrate:<stage> -------------------------------------------------------------------------------
def migrate_done(plan: Plan, stage: Stage) -> bool:
    """Nothing pending; on a rehearsing stage (restore_from), also this release's report is there."""
    rid = plan.release(stage).id
    done = plan.on_host(stage.hosts[0], lambda t: migrate_step.is_migrated(t, plan.config, stage, rid))
    if done and stage.restore_from:
        return plan.on_host(stage.hosts[0], lambda t: t.exists(plan.layout.rehearsal(rid)))
    return done


def run_migrate(plan: Plan, stage: Stage) -> str:
    """A database that is not a throwaway copy (the stage has no restore_from) is backed up, verified,
    right before its migration and again right after: invariant 3 holds whichever way the node is run.
    Before that, the rehearsal guard (invariant 8)."""
    rid = plan.release(stage).id
    db = plan.config.stage_database(stage)
    if stage.restore_from:
        return run_rehearsal(plan, stage)
    plan.lock([stage.hosts[0], plan.backup_host(db)], f"migrate:{stage.name}")
    if migrate_done(plan, stage):
        return "nothing pending"
    note = guard_production(plan, stage, rid)
    before = run_backup(plan, db, reason=f"before migrate:{stage.name} {rid}")
    failpoints.hit("migrate.after_backup_before")
    try:
        plan.on_host(stage.hosts[0], lambda t: migrate_step.run_migrations(t, plan.config, stage, rid))
        failpoints.hit("migrate.after_migrate")
    except StepError as exc:
        if db.restore_on_failed_migration:
            _restore_own_backup(plan, db, before)
            raise StepError(f"{exc}. {db.name} was restored from {before['file']} "
                            f"(restore_on_failed_migration = yes)") from None
        raise StepError(f"{exc}. The database {db.name} may be half-migrated: restore it from "
                        f"{plan.backup_host(db)}:{plan.layout.backups}/{before['file']} (taken just before)") from None
    failpoints.hit("migrate.before_backup_after")
    after = run_backup(plan, db, reason=f"after migrate:{stage.name} {rid}")
    return f"migrated{note}; backups {before['file']}, {after['file']}"


def run_rehearsal(plan: Plan, stage: Stage) -> str:
    """migrate:<stage> on a fresh copy of production: measured, reported. A copy already migrated
    without a report (or whose report went stale) is refreshed from a new backup first."""
    rid = plan.release(stage).id
    db = plan.config.stage_database(stage)
    plan.lock([stage.hosts[0]], f"migrate:{stage.name}")
    if migrate_done(plan, stage):
        return "nothing pending"
    first = stage.hosts[0]
    if plan.on_host(first, lambda t: migrate_step.is_migrated(t, plan.config, stage, rid)):
        src = plan.config.databases[stage.restore_from]
        run_backup(plan, src, reason=f"for the rehearsal of {rid}")
        run_restore(plan, stage)
    marker = plan.on_host(plan.backup_host(db), lambda t: read_text(t, plan.layout.db_marker(db.name)))
    try:
        backup = json.loads(marker or "{}").get("backup")
    except ValueError:
        backup = None
    report = plan.on_host(first, lambda t: rehearsal_step.rehearse(t, plan.config, stage, rid, backup))
    return f"rehearsed on a copy of {stage.restore_from}: {plan.layout.rehearsal(rid)} on {first}\n" \
        + text_table(report)


def rehearsing_stage(plan: Plan, stage: Stage) -> Stage | None:
    """The stage whose migrate rehearses this stage's database: the stage itself when it has restore_from,
    else up its promote_from chain, the first stage restoring its database from this stage's."""
    if stage.restore_from:
        return stage
    cur = plan.config.stages.get(stage.promote_from) if stage.promote_from else None
    while cur is not None:
        if cur.restore_from and cur.restore_from == stage.database:
            return cur
        cur = plan.config.stages.get(cur.promote_from) if cur.promote_from else None
    return None


def guard_production(plan: Plan, stage: Stage, rid: str) -> str:
    """Refuse to migrate with a release whose rehearsal is missing, stale, unsafe or stalls writes too
    long (the last two unless DEPLOY_ALLOW_UNSAFE names the release). Prints the report."""
    rs = rehearsing_stage(plan, stage)
    if rs is None:
        return ""
    report = plan.on_host(rs.hosts[0], lambda t: rehearsal_step.read_report(t, plan.layout, rid))
    applied = plan.on_host(stage.hosts[0],
                           lambda t: rehearsal_step.applied_migrations(t, plan.config, stage, rid))
    if report:
        print(text_table(report), flush=True)
    allow = plan.environ.get("DEPLOY_ALLOW_UNSAFE", "")
    reason = refusal(report, rid, applied, plan.config.project.max_write_stall, allow)
    what = f"migrate:{stage.name}: refused to migrate database {stage.database}"
    if reason and (report is None or "stale" in reason):
        if report is not None:
            plan.lock([rs.hosts[0]], f"migrate:{stage.name}")
            plan.on_host(rs.hosts[0], lambda t: rehearsal_step.mark_stale(t, plan.layout, rid))
        raise StepError(f"{what}: {reason}; run doit deploy:{rs.name} again (it rehearses {rid} on a fresh "
                        f"copy of {stage.database})")
    if reason:
        raise StepError(f"{what}: {reason}; change the migration, or accept it for this release only with "
                        f"DEPLOY_ALLOW_UNSAFE={rid}")
    if allow == rid and refusal(report, rid, applied, plan.config.project.max_write_stall, ""):
        return f" (its rehearsal's flags accepted by DEPLOY_ALLOW_UNSAFE={rid})"
    return ""


def _restore_own_backup(plan: Plan, db: Database, meta: dict) -> None:
    path = posixpath.join(plan.layout.backups, meta["file"])
    plan.on_host(plan.backup_host(db), lambda t: restore_step.restore_backup(t, plan.config, db, meta, path))


def migration_backups(plan: Plan, stage: Stage, rid: str) -> list[str]:
    """The backups taken around this release's migration of the stage's database (for the release log)."""
    db = plan.config.stage_database(stage)
    if not db or stage.restore_from:
        return []
    tag = f"migrate:{stage.name} {rid}"
    metas = plan.on_host(plan.backup_host(db), lambda t: backup_step.list_backups(t, plan.layout, db))
    return [m["file"] for m in metas if m.get("reason", "").endswith(tag)][-2:]


# -- switch:<stage> --------------------------------------------------------------------------------
def switch_done(plan: Plan, stage: Stage) -> bool:
    """Every link points at the release AND no host holds an intent: a switch whose reload, health check
    or release-log record did not happen (the deployer died) is not done."""
    rid = plan.release(stage).id
    states = plan.on_hosts(stage.hosts, lambda t: read_switch_state(t, plan, stage), "switch")
    return all(release_of(link) == rid and intent is None for link, intent in states)


def run_switch(plan: Plan, stage: Stage) -> str:
    release = plan.release(stage)
    return rollout(plan, stage, release.id, release.revision, "ok", f"switch:{stage.name}",
                   backups=migration_backups(plan, stage, release.id))
