"""The commands beside the deploy chain: verify, rollback, unlock, status. Like nodes.py, no doit here."""
from __future__ import annotations

from collections import Counter

from .config import Stage
from .plan import Plan
from .rollout import read_switch_state, rollout
from .steps.archive import Release
from .steps.build import build_release, is_built
from .steps.common import StepError, read_text
from .steps.lock import break_lock, holder_text
from .steps.releaselog import last_switch, make_record, read_log, rollback_target
from .steps.switch import read_link, release_of
from .steps.verify import record_verify, run_infra_tests


def run_verify(plan: Plan, stage: Stage) -> str:
    """infra-tests against every host, each checked against the release its own link points at (hosts
    may differ after a rollout with max_fail > 0); the result is recorded on each host."""
    what = f"verify:{stage.name}"
    plan.lock(stage.hosts, what)  # never records a verdict on a switch that another run is undoing
    targets = plan.on_hosts(stage.hosts, lambda t: read_link(t, plan.layout, stage.link), what)
    groups: dict[str, list] = {}
    for host, target in zip(stage.hosts, targets):
        rid = release_of(target)
        if rid is None:
            raise StepError(f"{what}: {host} has no {stage.link}; deploy or promote {stage.name} first")
        groups.setdefault(rid, []).append(host)
    failures, summaries = [], []
    for rid, hosts in groups.items():
        ok, output = run_infra_tests(plan.config, stage, rid, hosts)
        plan.on_hosts(hosts, lambda t, rid=rid, ok=ok: record_verify(t, plan.layout, stage.name, rid, ok),
                      f"{what}: recording the result")
        summaries.append(f"{rid}: {(output.strip().splitlines() or ['no output'])[-1]}")
        if not ok:
            failed = [ln for ln in output.splitlines() if ln.startswith(("FAILED", "ERROR"))]
            failures.append(f"{rid}: " + ("; ".join(failed[:5]) or summaries[-1]))
    if failures:
        raise StepError(f"{what}: infra-tests failed for " + " / ".join(failures))
    return "; ".join(summaries)


def run_rollback(plan: Plan, stage: Stage) -> str:
    """Back to the stage's previous good release (from the log); the release left is marked bad."""
    what = f"rollback:{stage.name}"
    current = plan.live_release(stage, what)
    logs = plan.on_hosts(stage.hosts, lambda t: read_log(t, plan.layout), f"{what}: reading the release log")
    target = rollback_target(logs[0], stage.name, current)
    if not target:
        raise StepError(f"{what}: the release log of {stage.hosts[0]} names no earlier good release of "
                        f"{stage.name} than {current}; nothing to roll back to")
    rec = last_switch(logs[0], stage.name, target) or {}
    plan.lock(stage.hosts, what)
    plan.on_hosts(stage.hosts, lambda t: rebuild_for_stage(t, plan, stage, target), f"{what}: preparing {target}")
    bad = make_record(stage.name, current, (last_switch(logs[0], stage.name, current) or {}).get("revision", ""),
                      None, "bad")
    msg = rollout(plan, stage, target, rec.get("revision", ""), "rollback", what, extra_records=[bad])
    note = ""
    if plan.config.stage_database(stage) and not stage.restore_from:
        note = (f"; the database schema was NOT rolled back: {current}'s migrations stay applied "
                "(restore a backup from db_backup/ if they must go)")
    return msg + f"; {current} marked bad" + note + "\n   " + run_verify(plan, stage)


def rebuild_for_stage(t, plan: Plan, stage: Stage, rid: str) -> None:
    """The stage-level build (env file, stage_dirs afresh, build_command) of the release rolled back to:
    the stage's generated files now belong to the release it leaves."""
    text = read_text(t, f"{plan.layout.release(rid)}/.deploy-release.json")
    if not text:
        raise StepError(f"release {rid} is gone or was never completed there; nothing to roll back to")
    release = Release.from_json(text)
    if not is_built(t, plan.config, stage, release):
        build_release(t, plan.config, stage, release, fresh_stage_dirs=True)


def run_unlock(plan: Plan, stage: Stage) -> str:
    db = plan.config.stage_database(stage)
    hosts = list(dict.fromkeys([*stage.hosts, *([db.backup_host] if db and db.backup_host else [])]))
    found = plan.on_hosts(hosts, lambda t: break_lock(t, plan.layout), f"unlock:{stage.name}")
    said = [f"{h}: removed the lock of {holder_text(r)}" for h, r in zip(hosts, found) if r is not False]
    return "; ".join(said) if said else f"no host of {stage.name} was locked"


def status_rows(plan: Plan) -> list[list[str]]:
    rows = []
    for stage in plan.config.stages.values():
        def probe(t, stage=stage):
            link, intent = read_switch_state(t, plan, stage)
            return link, read_log(t, plan.layout), intent
        states = plan.run_on_hosts(list(stage.hosts), probe)
        intents = [st[2] for st in states if not isinstance(st, Exception) and st[2]]
        rids = {}
        for host, st in zip(stage.hosts, states):
            rids[host] = "unreachable" if isinstance(st, Exception) else (release_of(st[0]) or "-")
        first = next((st for st in states if not isinstance(st, Exception)), None)
        logged = next((r.get("release") for r in reversed(first[1] if first else [])
                       if r.get("stage") == stage.name and r.get("result") in ("ok", "rollback")), None)
        counts = Counter(rids.values())
        top = max(counts.values())
        # the release most hosts run; on a tie, the one the release log says was switched to last
        main = logged if counts.get(logged) == top else counts.most_common(1)[0][0]
        rec = last_switch(first[1], stage.name, main) if first else None
        odd = [f"{h} has {r}" for h, r in rids.items() if r != main]
        agree = f"{len(stage.hosts)}/{len(stage.hosts)} agree" if not odd else "DISAGREE: " + "; ".join(odd)
        if intents:
            agree += (f"; HALF-DONE switch to {intents[0].get('release')} on {len(intents)} host(s) (its run "
                      f"died): the next deploy/promote of {stage.name} finishes or undoes it")
        rows.append([stage.name, main, (rec or {}).get("revision", "")[:12], (rec or {}).get("time", ""),
                     f"{rec['user']}@{rec['deployer']}" if rec else "", agree])
    return rows


def format_table(rows: list[list[str]]) -> str:
    head = ["stage", "release", "revision", "deployed", "by", "hosts"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    return "\n".join(lines)


def run_rehearsal_report(plan: Plan, stage: Stage) -> str:
    """The rehearsal report of the release the stage runs (for a promoted stage: the release it would
    receive, the one its source stage runs), read from the rehearsing stage's first host."""
    from .nodes import rehearsing_stage
    from .rehearsal import text_table
    from .steps.rehearsal import read_report

    what = f"rehearsal:{stage.name}"
    rs = rehearsing_stage(plan, stage)
    if rs is None:
        raise StepError(f"{what}: no stage rehearses the database of {stage.name} (none has restore_from = "
                        f"{stage.database or '-'} up its promote_from chain)")
    if stage.promote_from:
        rid = plan.live_release(plan.config.stages[stage.promote_from], what)
    else:
        try:
            rid = plan.live_release(stage, what)
        except StepError:
            rid = plan.source_release_id()
    report = plan.on_host(rs.hosts[0], lambda t: read_report(t, plan.layout, rid))
    if report is None:
        raise StepError(f"{what}: release {rid} has no rehearsal report on {rs.hosts[0]} "
                        f"({plan.layout.rehearsal(rid)}); run doit deploy:{rs.name}")
    return f"{plan.layout.rehearsal(rid)} on {rs.hosts[0]}\n" + text_table(report)
