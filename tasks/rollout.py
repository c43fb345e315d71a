"""rollout: a stage moved to a release on all its hosts, batch by batch, or on none.

Every host is checked first (release ready and built for the stage, shared links in place). Then each
batch: switch by rename, reload, health check, per host. A host that fails any of these goes back to its
previous release at once; when more than max_fail hosts failed, every host goes back. The release log
gets the outcome on every host, written after the switch.
"""
from __future__ import annotations

import shlex

from .config import Stage
from .plan import Plan
from .progress import Progress
from .steps import build as build_step
from .steps.cleanup import clean_releases
from .steps.common import StepError, read_text
from .steps.environment import app_command
from .steps.health import check_health, health_url
from .steps.releaselog import append_record, make_record
from .steps.switch import is_ready, read_link, release_of, set_link, switch_link
from .transport import Transport


def rollout(plan: Plan, stage: Stage, rid: str, revision: str, result: str, what: str,
            backups: list[str] | None = None, extra_records: list[dict] | None = None) -> str:
    plan.lock(stage.hosts, what)
    layout = plan.layout

    def check(t: Transport):
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
    prev_rid = release_of(next(iter(previous.values())))

    def go_live(t: Transport):
        switch_link(t, layout, stage.link, rid)
        try:
            if stage.reload_command:
                t.run(app_command(layout, stage.name, rid, shlex.split(stage.reload_command)))
            problem = check_health(health_url(stage.health_url, t.host), stage.health_timeout) \
                if stage.health_url else None
            if problem:
                raise StepError(f"health check failed: {problem}")
        except Exception:
            _put_back(plan, stage, t, previous[t.host])
            raise

    done, failed = [], []
    progress = Progress(what, len(stage.hosts))
    for batch in plan.batches(stage):
        with progress:
            results = plan.run_on_hosts(batch, go_live, progress)
        done += [h for h, r in zip(batch, results) if not isinstance(r, Exception)]
        failed += [(h, r) for h, r in zip(batch, results) if isinstance(r, Exception)]
        if len(failed) > stage.max_fail:
            plan.run_on_hosts(done, lambda t: _put_back(plan, stage, t, previous[t.host]))
            _log(plan, stage.hosts, [make_record(stage.name, rid, revision, prev_rid, "failed")])
            problems = "; ".join(str(r) if str(r).startswith(str(h)) else f"{h}: {r}" for h, r in failed)
            raise StepError(f"{what}: {problems}; every host of {stage.name} is back on its previous release")
    _log(plan, done, [make_record(stage.name, rid, revision, prev_rid, result, backups), *(extra_records or [])])
    _log(plan, [h for h, _ in failed], [make_record(stage.name, rid, revision, prev_rid, "failed")])
    note = f"; {len(failed)} host(s) failed and stay on the previous release (max_fail = {stage.max_fail})" \
        if failed else ""
    return f"{stage.link} -> {rid} on {len(done)} host(s){note}"


def _put_back(plan: Plan, stage: Stage, t: Transport, target: str | None) -> None:
    set_link(t, plan.layout, stage.link, target)
    old = release_of(target)
    if old and stage.reload_command:
        t.call(app_command(plan.layout, stage.name, old, shlex.split(stage.reload_command)))


def _log(plan: Plan, hosts, records: list[dict]) -> None:
    """Append the records, then clean up old releases (never one a link or a rollback needs)."""
    links = [s.link for s in plan.config.stages.values()]

    def one(t: Transport):
        for rec in records:
            append_record(t, plan.layout, rec)
        clean_releases(t, plan.layout, links, plan.config.project.keep_releases)
    if hosts:
        plan.on_hosts(list(hosts), one, "release log")
