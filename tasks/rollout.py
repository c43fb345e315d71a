"""rollout: a stage moved to a release on all its hosts, batch by batch, or on none.

Every host is checked first (release ready and built for the stage, shared links in place). Then an
intent is written on every host (stage, release, that host's previous link, the run's token), and each
batch is switched by rename, reloaded and health-checked, per host. A host that fails any of these goes
back to its previous release at once; when more than max_fail hosts failed, every host goes back. The
release log gets the outcome on every host, and only then is the intent removed: a switch is done when its
last effect is recorded (invariant 7). An intent left by a dead run makes the next rollout finish that
switch (the same release: reload, health check and log again) or undo it (another release: every host
back on the link it had before), and say which.
"""
from __future__ import annotations

import json
import shlex

from . import failpoints
from .config import Stage
from .plan import Plan
from .progress import Progress
from .steps import build as build_step
from .steps.cleanup import clean_releases
from .steps.common import StepError, write_file
from .steps.environment import app_command
from .steps.health import check_health, health_url
from .steps.releaselog import append_record, make_record
from .steps.switch import read_readiness, release_of, set_link, switch_link
from .transport import Transport

# $1 link, $2 intent file: the link's target, a separator, then the intent (if any)
STATE = 'readlink -- "$1"; echo "--intent--"; cat -- "$2" 2>/dev/null; true'


def parse_switch_state(text: str) -> tuple[str | None, dict | None]:
    """STATE's output -> (link target or None, the intent left on the host or None)."""
    link, _, intent = text.partition("--intent--\n")
    try:
        parsed = json.loads(intent) if intent.strip() else None
    except ValueError:
        parsed = None
    return (link.strip() or None), (parsed if isinstance(parsed, dict) else None)


def read_switch_state(t: Transport, plan: Plan, stage: Stage) -> tuple[str | None, dict | None]:
    out = t.run(["sh", "-c", STATE, "sh", plan.layout.link(stage.link), plan.layout.intent(stage.name)])
    return parse_switch_state(out)


def rollout(plan: Plan, stage: Stage, rid: str, revision: str, result: str, what: str,
            backups: list[str] | None = None, extra_records: list[dict] | None = None) -> str:
    plan.lock(stage.hosts, what)
    note = settle_intents(plan, stage, rid, what)
    states = dict(zip(stage.hosts, plan.on_hosts(stage.hosts, lambda t: _check(plan, stage, rid, t),
                                                 f"{what} (nothing was switched)")))
    # a half-done switch of this very release goes on from where it was: its intent knows the previous link
    previous = {h: (i["previous"] if i else link) for h, (link, i) in states.items()}
    prev_rid = release_of(next(iter(previous.values())))
    intent = {"stage": stage.name, "release": rid, "revision": revision, "result": result,
              "token": plan.token, "what": what}
    plan.on_hosts(stage.hosts, lambda t: write_file(t, plan.layout.intent(stage.name), json.dumps(
        {**intent, "previous": previous[t.host]}, sort_keys=True).encode(), "644"), f"{what}: writing the intent")
    failpoints.hit("switch.after_intent")

    def go_live(t: Transport):
        switch_link(t, plan.layout, stage.link, rid)
        try:
            failpoints.hit("switch.after_rename", t.host)
            if stage.reload_command:
                t.run(app_command(plan.layout, stage.name, rid, shlex.split(stage.reload_command)))
            failpoints.hit("switch.after_reload", t.host)
            problem = check_health(health_url(stage.health_url, t.host), stage.health_timeout) \
                if stage.health_url else None
            if problem:
                raise StepError(f"health check failed: {problem}")
        except Exception:
            _put_back(plan, stage, t, previous[t.host])
            raise

    done, failed = [], []
    progress = Progress(what, len(stage.hosts))
    with plan.deferred_signals() as interrupted:
        for batch in plan.batches(stage):
            with progress:
                results = plan.run_on_hosts(batch, go_live, progress)
            done += [h for h, r in zip(batch, results) if not isinstance(r, Exception)]
            failed += [(h, r) for h, r in zip(batch, results) if isinstance(r, Exception)]
            if len(failed) > stage.max_fail or (interrupted() and len(done) + len(failed) < len(stage.hosts)):
                plan.run_on_hosts(done, lambda t: _put_back(plan, stage, t, previous[t.host]))
                try:
                    _log(plan, stage.hosts, [make_record(stage.name, rid, revision, prev_rid, "failed")], stage)
                except StepError:
                    pass  # a host that cannot be logged on is among the failures named below
                if interrupted():
                    raise StepError(f"{what}: interrupted; every host of {stage.name} that had switched was "
                                    "put back on its previous release (undone)")
                problems = "; ".join(str(r) if str(r).startswith(str(h)) else f"{h}: {r}" for h, r in failed)
                raise StepError(f"{what}: {problems}; every host of {stage.name} is back on its previous release")
        failpoints.hit("switch.before_log")
        _log(plan, done, [make_record(stage.name, rid, revision, prev_rid, result, backups),
                          *(extra_records or [])], stage)
        _log(plan, [h for h, _ in failed], [make_record(stage.name, rid, revision, prev_rid, "failed")], stage)
        if interrupted():
            note += "; interrupted after every host had switched: the switch was finished, not undone"
    note += f"; {len(failed)} host(s) failed and stay on the previous release (max_fail = {stage.max_fail})" \
        if failed else ""
    return f"{stage.link} -> {rid} on {len(done)} host(s){note}"


def _check(plan: Plan, stage: Stage, rid: str, t: Transport):
    layout = plan.layout
    shared = [*plan.config.project.shared_dirs, *plan.config.project.shared_files]
    facts = read_readiness(t, layout, rid, build_step.built_marker(layout, stage.name), stage.link, shared)
    if not facts["ready"]:
        raise StepError(f"release {rid} is not built there; run doit build:{stage.name}")
    if facts["built"] != rid:
        raise StepError(f"release {rid} is not built for stage {stage.name}; run doit build:{stage.name}")
    if facts["missing"]:
        raise StepError(f"{', '.join(facts['missing'])} not linked into {rid} from shared/ (create it under "
                        f"{layout.shared}, then run doit build:{stage.name})")
    return read_switch_state(t, plan, stage)


def settle_intents(plan: Plan, stage: Stage, rid: str, what: str) -> str:
    """An intent of a dead run for ANOTHER release is undone on every host that has one (its link back to
    the previous target, reloaded, the release logged as failed); one for this release is finished by the
    rollout that follows. Returns what was done, for the summary."""
    states = plan.on_hosts(stage.hosts, lambda t: read_switch_state(t, plan, stage), f"{what}: reading the links")
    left = [(h, i) for h, (_, i) in zip(stage.hosts, states) if i and i.get("token") != plan.token]
    if not left:
        return ""
    other = [(h, i) for h, i in left if i.get("release") != rid]

    def undo(t: Transport):
        i = dict(other)[t.host]
        _put_back(plan, stage, t, i.get("previous"))
        append_record(t, plan.layout, make_record(stage.name, i.get("release", "?"), i.get("revision", ""),
                                                  release_of(i.get("previous")), "failed", token=i.get("token")))
        t.run(["rm", "-f", "--", plan.layout.intent(stage.name)])
    if other:
        plan.on_hosts([h for h, _ in other], undo, f"{what}: undoing a half-done switch")
        return f"; undid the half-done switch to {other[0][1].get('release')} left by a dead run"
    return f"; finished the half-done switch to {rid} left by a dead run ({left[0][1].get('what', '?')})"


def _put_back(plan: Plan, stage: Stage, t: Transport, target: str | None) -> None:
    set_link(t, plan.layout, stage.link, target)
    old = release_of(target)
    if old and stage.reload_command:
        t.call(app_command(plan.layout, stage.name, old, shlex.split(stage.reload_command)))


def _log(plan: Plan, hosts, records: list[dict], stage: Stage) -> None:
    """Append the records, clean up old releases (never one a link or a rollback needs), and only then
    remove the intent: the record is the switch's last effect."""
    links = [s.link for s in plan.config.stages.values()]

    def one(t: Transport):
        for rec in records:
            append_record(t, plan.layout, {**rec, "token": plan.token})
        failpoints.hit("switch.after_log", t.host)
        t.run(["rm", "-f", "--", plan.layout.intent(stage.name)])
        clean_releases(t, plan.layout, links, plan.config.project.keep_releases,
                       venvs=plan.config.project.build == "pip")
    if hosts:
        plan.on_hosts(list(hosts), one, "release log")
