"""The nodes of the graph: for each, a check of the real state (`*_done`) and the work (`run_*`).

Each node is all or nothing across the stage's hosts. Nothing here knows doit: doit_tasks.py wires these
functions into tasks; a check answers True/False, a run returns a short summary or raises StepError.
"""
from __future__ import annotations

import json
import posixpath
import shlex
import time

from .config import Database, Stage
from .plan import Plan
from .steps import backup as backup_step
from .steps import build as build_step
from .steps import migrate as migrate_step
from .steps import restore as restore_step
from .steps.archive import local_release
from .steps.cleanup import clean_releases
from .steps.common import StepError, read_text, write_file
from .steps.environment import app_command
from .steps.health import check_health, health_url
from .steps.releaselog import append_record, make_record
from .steps.switch import is_ready, read_link, release_of, set_link, switch_link
from .steps.upload import has_release, upload_release
from .transport import connect


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
    plan.lock(stage.hosts, f"upload:{stage.name}")
    plan.on_hosts(stage.hosts, lambda t: upload_release(t, plan.layout, release, plan.config.build_dir),
                  f"upload:{stage.name}")
    return f"{release.id} on {len(stage.hosts)} host(s)"


def build_done(plan: Plan, stage: Stage) -> bool:
    release = plan.release(stage)
    return all(plan.on_hosts(stage.hosts, lambda t: build_step.is_built(t, plan.config, stage, release), "build"))


def run_build(plan: Plan, stage: Stage) -> str:
    release = plan.release(stage)
    plan.lock(stage.hosts, f"build:{stage.name}")

    def one(t):
        if not build_step.is_built(t, plan.config, stage, release):
            build_step.build_release(t, plan.config, stage, release, fresh_stage_dirs=bool(stage.promote_from))
    plan.on_hosts(stage.hosts, one, f"build:{stage.name}")
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
        with _connect(plan, src_host) as s:
            path, temporary = restore_step.stage_backup_file(s, dst, plan.config, newest)
        try:
            restore_step.restore_backup(dst, plan.config, db, newest, path)
        finally:
            if temporary:
                dst.call(["rm", "-f", "--", path])
        marker = json.dumps({"backup": newest["name"], "release": rid}, sort_keys=True).encode()
        write_file(dst, plan.layout.db_marker(db.name), marker)
    plan.on_host(dst_host, load)
    return f"{db.name} := {newest['file']}"


def _connect(plan: Plan, host):
    return connect(host, plan.config.project.ssh_config)


# -- migrate:<stage> -------------------------------------------------------------------------------
def migrate_done(plan: Plan, stage: Stage) -> bool:
    rid = plan.release(stage).id
    return plan.on_host(stage.hosts[0], lambda t: migrate_step.is_migrated(t, plan.config, stage, rid))


def run_migrate(plan: Plan, stage: Stage) -> str:
    """A database that is not a throwaway copy (the stage has no restore_from) is backed up, verified,
    right before its migration and again right after: invariant 3 holds whichever way the node is run."""
    rid = plan.release(stage).id
    db = plan.config.stage_database(stage)
    protect = not stage.restore_from
    plan.lock([stage.hosts[0], *([plan.backup_host(db)] if protect else [])], f"migrate:{stage.name}")
    if migrate_done(plan, stage):
        return "nothing pending"
    before = run_backup(plan, db, reason=f"before migrate:{stage.name} {rid}") if protect else None
    try:
        plan.on_host(stage.hosts[0], lambda t: migrate_step.run_migrations(t, plan.config, stage, rid))
    except StepError as exc:
        if not before:
            raise
        if db.restore_on_failed_migration:
            _restore_own_backup(plan, db, before)
            raise StepError(f"{exc}. {db.name} was restored from {before['file']} "
                            f"(restore_on_failed_migration = yes)") from None
        raise StepError(f"{exc}. The database {db.name} may be half-migrated: restore it from "
                        f"{plan.backup_host(db)}:{plan.layout.backups}/{before['file']} (taken just before)") from None
    after = run_backup(plan, db, reason=f"after migrate:{stage.name} {rid}") if protect else None
    return "migrated" + (f"; backups {before['file']}, {after['file']}" if protect else "")


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
    rid = plan.release(stage).id
    targets = plan.on_hosts(stage.hosts, lambda t: read_link(t, plan.layout, stage.link), "switch")
    return all(release_of(x) == rid for x in targets)


def run_switch(plan: Plan, stage: Stage) -> str:
    release = plan.release(stage)
    return switch_stage(plan, stage, release.id, release.revision, "ok", f"switch:{stage.name}",
                        backups=migration_backups(plan, stage, release.id))


def switch_stage(plan: Plan, stage: Stage, rid: str, revision: str, result: str, what: str,
                 backups: list[str] | None = None, extra_records: list[dict] | None = None) -> str:
    """Every host checked first; then switched batch by batch (reload, health); on any failure every
    switched host goes back to its previous target and the failure is logged."""
    plan.lock(stage.hosts, what)
    layout = plan.layout

    def check(t):
        if not is_ready(t, layout, rid):
            raise StepError(f"release {rid} is not built there; run doit build:{stage.name}")
        if (read_text(t, build_step.built_marker(layout, stage.name)) or "").strip() != rid:
            raise StepError(f"release {rid} is not built for stage {stage.name}; run doit build:{stage.name}")
        missing = build_step.missing_shared(t, plan.config, rid)
        if missing:
            raise StepError(f"{', '.join(missing)} not linked into {rid} from shared/ (create it under "
                            f"{layout.shared}, then run doit build:{stage.name})")
        return read_link(t, layout, stage.link)
    previous = dict(zip(stage.hosts, plan.on_hosts(stage.hosts, check, f"{what} (nothing was switched)")))
    done: list = []
    try:
        for batch in plan.batches(stage):
            plan.on_hosts(batch, lambda t: switch_link(t, layout, stage.link, rid), what)
            done += batch
            _reload(plan, stage, batch, rid, what)
            _health(plan, stage, batch, what)
    except StepError as exc:
        _undo(plan, stage, previous, done, rid, revision, what)
        raise StepError(f"{exc}; every host of {stage.name} is back on its previous release") from None
    prev_rid = release_of(next(iter(previous.values())))
    record = make_record(stage.name, rid, revision, prev_rid, result, backups)

    def log(t):
        for rec in [record, *(extra_records or [])]:
            append_record(t, layout, rec)
        clean_releases(t, layout, [s.link for s in plan.config.stages.values()], plan.config.project.keep_releases)
    plan.on_hosts(stage.hosts, log, f"{what}: release log")
    return f"{stage.link} -> {rid} on {len(stage.hosts)} host(s)"


def _reload(plan: Plan, stage: Stage, hosts, rid: str, what: str) -> None:
    if stage.reload_command:
        argv = app_command(plan.layout, stage.name, rid, shlex.split(stage.reload_command))
        plan.on_hosts(hosts, lambda t: t.run(argv), f"{what}: reload_command")


def _health(plan: Plan, stage: Stage, hosts, what: str) -> None:
    if not stage.health_url:
        return
    problems = [p for p in (check_health(health_url(stage.health_url, h), stage.health_timeout) for h in hosts) if p]
    if problems:
        raise StepError(f"{what}: health check failed: {'; '.join(problems)}")


def _undo(plan: Plan, stage: Stage, previous: dict, done: list, rid: str, revision: str, what: str) -> None:
    plan.run_on_hosts(done, lambda t: set_link(t, plan.layout, stage.link, previous[t.host]))
    prev_rid = release_of(next(iter(previous.values())))
    if prev_rid and stage.reload_command:
        argv = app_command(plan.layout, stage.name, prev_rid, shlex.split(stage.reload_command))
        plan.run_on_hosts(done, lambda t: t.run(argv))
    record = make_record(stage.name, rid, revision, prev_rid, "failed")
    plan.run_on_hosts(list(stage.hosts), lambda t: append_record(t, plan.layout, record))
