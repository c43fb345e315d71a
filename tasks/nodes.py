"""The nodes of the graph: for each, a check of the real state (`*_done`) and the step it runs (`run_*`).

Each node is all or nothing across the stage's hosts; the step files hold the work (steps/*.py), this
module only checks state and calls them. Nothing here knows doit: doit_tasks.py wires these functions into
tasks. A check answers True/False; a run returns a short summary or raises StepError. Every function takes
the run's Session and its Releases (which release each stage gets), then the stage or database.
"""
from __future__ import annotations

import time

from .config import ConfigError, Database, Stage
from .errors import StepError
from .progress import Progress
from .releases import Releases
from .session import Session
from .steps import build as build_step
from .steps import hooks
from .steps.archive import Release, local_release
from .steps.environment import env_token
from .steps.facts import facts_argv
from .steps.links import link_argv, release_of
from .steps.switch import read_state, switch_stage
from .steps.switch_state import state_argv as switch_state_argv
from .steps.upload import has_argv, has_release, upload_release
from .steps.verify import verify_argv
from .transport import Cmd, CommandFailed, Transport, call_key

# The database's steps (backup, restore, migrate, the rehearsal) are imported by the nodes that use them:
# a code-only deploy never loads them (start-up time counts on every run).


# -- archive ---------------------------------------------------------------------------------------
def archive_done(s: Session, r: Releases) -> bool:
    return r.built_release() is not None


def run_archive(s: Session, r: Releases) -> str:
    release = r.make_archive()
    return f"{release.id} sha256 {release.sha256[:12]}"


# -- backup:<db> (fresh enough) --------------------------------------------------------------------
def newest_of(s: Session, db: Database) -> dict | None:
    from .steps.database import backup as backup_step
    return s.hosts.one(s.backup_host(db), lambda t: backup_step.newest_backup(t, s.layout, db))


def backup_done(s: Session, r: Releases, db: Database) -> bool:
    newest = newest_of(s, db)
    return bool(newest) and time.time() - newest["epoch"] < s.config.project.backup_max_age


def run_backup(s: Session, r: Releases, db: Database) -> dict:
    from .steps.database import backup as backup_step
    return backup_step.take_backup(s, db)


# -- the checks' reads, sent ahead ------------------------------------------------------------------
# A stage's chain reads each host's state in up to four checks (upload, build, switch, and verify's facts),
# each a read-only command. While the run holds the host's lock they are sent together, in ONE exchange:
# with the lock's take when the first of them locks, else at the first of them that finds no kept answer;
# each check then takes its answer (Transport.keep: valid until the run's next command to that host, which
# forgets them; an action that wrote reads again).
CHAIN_READS = ("upload", "build", "switch", "verify")


def check_reads(s: Session, r: Releases, kind: str, stage: Stage):
    """For the lock's take before the check of `kind`: a function of a host's Transport giving the reads
    [(key, Cmd)] of that check and the chain's later ones, or None. A promoted stage's release is not known
    before the lock: then the reads that find it (the source stage's link and verify record, where the
    source's hosts are these)."""
    if kind == "backup":   # backup:<db>: its check lists the database's backups on its backup host
        from .steps.database.backup import list_cmd
        argv = list_cmd(s.layout).argv
        return lambda t: [(call_key(argv), Cmd(argv))]
    if kind == "restore":  # restore:<stage>: its check reads the source's backups and the stage's marker
        from .steps.database.backup import list_cmd
        from .steps.database.restore import marker_argv
        src, db = s.config.databases[stage.restore_from], s.config.stage_database(stage)
        on = {s.backup_host(src): [list_cmd(s.layout).argv]}
        on.setdefault(s.backup_host(db), []).append(marker_argv(s.layout, db))
        return lambda t: [(call_key(argv), Cmd(argv)) for argv in on.get(t.host, [])]
    if kind not in CHAIN_READS:
        return None
    release = r.known(stage)
    if release is None and stage.promote_from:
        src = s.config.stages[stage.promote_from]
        finds = [(call_key(argv), Cmd(argv))
                 for argv in (link_argv(s.layout, src.link), verify_argv(s.layout, src.name))]
        # the chain's reads too, for the release most likely promoted (the newest archive here: what the
        # source stage got last, when it went through this machine): kept by their argv, they spare an
        # exchange when the source's link names that release, and are never used when it names another
        guess = likely_promoted(s)
        try:
            ahead = chain_reads(s, stage, guess, kind) if guess else []
        except (StepError, CommandFailed, ConfigError):
            ahead = []
        return lambda t: [*(finds if t.host in src.hosts else []), *(ahead if t.host in stage.hosts else [])]
    try:
        # the source's archive, here (the archive node made it); the reads are the same for every host
        reads = chain_reads(s, stage, release or r.of(stage), kind)
    except (StepError, CommandFailed, ConfigError):   # the check itself asks, and says what is wrong
        return None
    return lambda t: reads if t.host in stage.hosts else []   # (not the database's backup host)


def likely_promoted(s: Session):
    """The release of the newest archive in the build directory, from its metadata (not checked against
    its archive: only a guess for reads sent ahead), or None."""
    build = s.config.build_dir
    try:
        archives = sorted(build.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    for archive in reversed(archives):
        try:
            return Release.from_json((build / (archive.name[:-len(".tar.gz")] + ".json")).read_text())
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return None


def chain_reads(s: Session, stage: Stage, release, kind: str) -> list[tuple[tuple, Cmd]]:
    """The reads of the check of `kind` and of the chain's checks after it, as they send them."""
    at = CHAIN_READS.index(kind)
    reads = []
    if at <= 0:
        reads.append((has_argv(s.layout, release), None))
    if at <= 1:
        reads.append(build_step.state_argv(s.layout, s.config, stage, release)[:2])
    if at <= 2:
        reads.append((switch_state_argv(s, stage, release.id), None))
    reads.append((facts_argv(s.layout, s.config, stage, release.id), None))
    return [(call_key(argv, given), Cmd(argv, given)) for argv, given in reads]


def read_ahead(s: Session, stage: Stage, release, kind: str, t: Transport) -> None:
    """The reads of the check of `kind` and the later ones, in one exchange, unless the first is kept
    already; only while the run holds the host's lock (else nothing could be kept)."""
    if not t.held:
        return
    reads = chain_reads(s, stage, release, kind)
    if t.kept(reads[0][0]) is None:
        t.read_batch(reads)


# -- upload:<stage>, build:<stage> -----------------------------------------------------------------
def upload_done(s: Session, r: Releases, stage: Stage) -> bool:
    release = r.of(stage)

    def one(t):
        read_ahead(s, stage, release, "upload", t)
        return has_release(t, s.layout, release)
    return all(s.hosts.each(stage.hosts, one, "upload", wide=True))


def check_shared_files(s: Session, stage: Stage, what: str) -> None:
    """Every shared file on every host of the stage, before anything is written there (not even the lock)."""
    if not s.config.project.shared_files:
        return
    missing = s.hosts.each(stage.hosts, lambda t: build_step.missing_shared_files(t, s.layout, s.config), what,
                           wide=True)
    problem = build_step.shared_files_problem(what, s.layout, {str(h): m for h, m in zip(stage.hosts, missing)})
    if problem:
        raise StepError(problem)


def run_upload(s: Session, r: Releases, stage: Stage) -> str:
    return hooks.around(s, r, stage, "upload", lambda: _upload(s, r, stage))


def _upload(s: Session, r: Releases, stage: Stage) -> str:
    release, what, build_dir = r.of(stage), f"upload:{stage.name}", s.config.build_dir
    if local_release(build_dir, release.id) is None:
        raise StepError(f"{what}: build/{release.id}.tar.gz is missing or damaged; run doit archive")
    check_shared_files(s, stage, what)
    s.lock(stage.hosts, what)
    size = (build_dir / f"{release.id}.tar.gz").stat().st_size
    with Progress(what, len(stage.hosts)) as progress:
        source = None
        if s.config.project.store:
            from .steps.store import store_source  # imports boto3: only for runs that use a store
            source = store_source(s.config, release, what, progress)

        try:   # the build's check and the later ones read in the archive's exchange (only while locked)
            ahead = chain_reads(s, stage, release, "build")
        except (StepError, CommandFailed, ConfigError):
            ahead = []

        def one(t):
            if upload_release(t, s.layout, release, build_dir, source, promoted=bool(stage.promote_from),
                              then=ahead if t.held else ()):
                progress.sent(size)
        s.hosts.each(stage.hosts, one, what, progress)
    via = f" (through {s.config.project.store.url})" if source else ""
    return f"{release.id} on {len(stage.hosts)} host(s){via}"


def build_done(s: Session, r: Releases, stage: Stage) -> bool:
    release = r.of(stage)

    def one(t):
        read_ahead(s, stage, release, "build", t)
        return build_step.is_built(t, s.layout, s.config, stage, release, known=s.known_links)
    return all(s.hosts.each(stage.hosts, one, "build", wide=True))


def run_build(s: Session, r: Releases, stage: Stage) -> str:
    return hooks.around(s, r, stage, "build", lambda: _build(s, r, stage))


def _build(s: Session, r: Releases, stage: Stage) -> str:
    release, what = r.of(stage), f"build:{stage.name}"
    check_shared_files(s, stage, what)
    s.lock(stage.hosts, what)
    tokens = (env_token(), env_token())   # a new env version gets the same name on every host

    def one(t):
        if not build_step.is_built(t, s.layout, s.config, stage, release, known=s.known_links):
            # the release's own stage dirs (shared/<stage>/<id>), afresh: the live release's are never touched
            # the switch's check (and verify's facts) read in the same exchange, after the build's writes
            build_step.build_release(t, s.layout, s.config, stage, release, fresh_stage_dirs=True, tokens=tokens,
                                     then=chain_reads(s, stage, release, "switch") if t.held else ())
    with Progress(what, len(stage.hosts)) as progress:
        s.hosts.each(stage.hosts, one, what, progress)
    return f"{release.id} ready on {len(stage.hosts)} host(s)"


# -- restore:<stage> -------------------------------------------------------------------------------
def restore_done(s: Session, r: Releases, stage: Stage) -> bool:
    from .steps.database import restore as restore_step
    newest = newest_of(s, s.config.databases[stage.restore_from])
    marker = restore_step.restored(s, s.config.stage_database(stage))
    return bool(newest and marker) and restore_step.holds(marker, newest["name"], r.of(stage).id)


def run_restore(s: Session, r: Releases, stage: Stage) -> str:
    from .steps.database import restore as restore_step
    src, db = s.config.databases[stage.restore_from], s.config.stage_database(stage)
    s.lock([s.backup_host(db), *stage.hosts], f"restore:{stage.name}")
    newest = newest_of(s, src)
    if not newest:
        raise StepError(f"restore:{stage.name}: there is no verified backup of {src.name} on {s.backup_host(src)}; "
                        f"run doit backup:{src.name}")
    return restore_step.restore_stage(s, stage, newest, r.of(stage).id)


# -- migrate:<stage> -------------------------------------------------------------------------------
def migrate_done(s: Session, r: Releases, stage: Stage) -> bool:
    """Nothing pending; on a rehearsing stage (restore_from), also this release's report is there; on any
    other, also no migration of its database lacks its outcome, the "after" backup (production_migration)."""
    from .steps.migration import production_migration
    rid = r.of(stage).id
    done = _migrated(s, stage, rid)
    if done and stage.restore_from:
        return s.hosts.one(stage.primary, lambda t: t.exists(s.layout.rehearsal(rid)))
    return done and not production_migration.unfinished(s, stage)


def _migrated(s: Session, stage: Stage, rid: str) -> bool:
    from .steps.migration import migrate as migrate_step
    return s.hosts.one(stage.primary, lambda t: migrate_step.is_migrated(t, s.layout, s.config, stage, rid))


def run_migrate(s: Session, r: Releases, stage: Stage) -> str:
    """A throwaway copy (restore_from) is rehearsed; any other database is guarded by its rehearsal
    (invariant 8), then migrated between two verified backups (invariant 3), recorded from its intent to
    its outcome, so that a run that died half way is finished by the next (invariant 7)."""
    from .steps.migration import production_migration
    if stage.restore_from:
        return hooks.around(s, r, stage, "migrate", lambda: run_rehearsal(s, r, stage))
    return hooks.around(s, r, stage, "migrate",
                        lambda: production_migration.migrate_production(s, stage, r.of(stage).id))


def run_rehearsal(s: Session, r: Releases, stage: Stage) -> str:
    """migrate:<stage> on a fresh copy of production (rehearsal.copy_to_rehearse): measured, reported; it
    says which backup and why. The report's sha256 is recorded before the report is written
    (rehearsal_guard.record_rehearsal)."""
    from .steps.database import restore as restore_step
    from .steps.migration import rehearsal as rehearsal_step
    from .steps.migration.rehearsal_guard import keep_markdown, record_rehearsal
    from .steps.migration.rehearsal_report import text_table
    rid, db, first = r.of(stage).id, s.config.stage_database(stage), stage.primary
    src = s.config.databases[stage.restore_from]
    s.lock([first, s.backup_host(src), s.backup_host(db)], f"migrate:{stage.name}")
    if migrate_done(s, r, stage):
        return "nothing pending"
    marker, why = rehearsal_step.copy_to_rehearse(
        s, stage, rid, restore=lambda: print(f"   {run_restore(s, r, stage)}", flush=True),
        say=lambda text: _say_node(f"migrate:{stage.name}", text))
    backup = (marker or {}).get("backup")
    _say_node(f"migrate:{stage.name}", f"rehearsing on {db.name} := {backup} ({why})")
    report = s.hosts.one(first, lambda t: rehearsal_step.rehearse(
        t, s.layout, s.config, stage, rid, backup, begin=lambda: restore_step.mark_rehearsing(s, db, marker)))
    record_rehearsal(s, stage, report)
    s.hosts.one(first, lambda t: rehearsal_step.write_report(t, s.layout, report))
    s.rehearsal_reports.append(keep_markdown(s.config, report))
    return f"rehearsed on a copy of {stage.restore_from}: {s.layout.rehearsal(rid)} on {first}\n" + text_table(report)


def _say_node(what: str, text: str) -> None:
    """Printed at once: the node's own summary comes only at its end."""
    print(f"   {what}: {text}", flush=True)


# -- switch:<stage> --------------------------------------------------------------------------------
def switch_done(s: Session, r: Releases, stage: Stage) -> bool:
    """Every link points at the release, the release runs there with the env version its build recorded,
    AND no host holds an intent: a switch whose reload, health check or release-log record did not happen
    (the deployer died) is not done, nor is a stage on the right release with another env."""
    release = r.of(stage)
    rid = release.id

    def one(t):
        read_ahead(s, stage, release, "switch", t)
        return read_state(t, s, stage, rid)
    states = s.hosts.each(stage.hosts, one, "switch", wide=True)
    return all(release_of(st["link"]) == rid and st["intent"] is None and not st["unsafe"] and st["env"] and
               st["env_live"] == st["env"] for st in states)


def run_switch(s: Session, r: Releases, stage: Stage) -> str:
    return hooks.around(s, r, stage, "switch", lambda: _switch(s, r, stage))


def _switch(s: Session, r: Releases, stage: Stage) -> str:
    """after_switch: on each host inside the switch (a failure is a failed reload), or, local:, once when
    every host switched (a failure puts every host back)."""
    release, backups, what = r.of(stage), [], f"switch:{stage.name}"
    if s.config.stage_database(stage) and not stage.restore_from:   # else migration_backups has none
        from .steps.migration import production_migration
        backups = production_migration.migration_backups(s, stage, release.id)
    after = stage.hook("after_switch")
    once = None
    if after is not None and after.local:
        def once():
            hooks.run_hook(s, stage, "after_switch", release.id, lambda: hooks.context(s, stage, release, what),
                           on_hosts=False)
    return switch_stage(s, stage, release.id, release.revision, "ok", what, backups=backups,
                        after_host=hooks.host_hook(s, stage, "after_switch", release.id), after_all=once)
