"""The commands beside the deploy chain: rollback, unlock, status, the rehearsal report (verify is a step:
steps/verify.py). Like nodes.py, no doit here; each takes the run's Session and Releases, then the stage."""
from __future__ import annotations

from collections import Counter

from .config import Stage
from .errors import StepError
from .releases import Releases
from .runtime.common import read_text
from .runtime.lock import alive_here, break_lock, holder_text, probe_lock
from .session import Session
from .steps import hooks
from .steps.archive import Release
from .steps.build import build_release, is_built
from .steps.links import live_release, release_of, stage_releases
from .steps.releaselog import last_switch, make_record, read_log, rollback_target
from .steps.switch import read_state, switch_stage
from .steps.verify import verify_stage
from .transport import CommandFailed


def run_verify(s: Session, r: Releases, stage: Stage) -> str:
    """verify:<stage>, between its before_verify and after_verify, which run in the release each host runs."""
    def live() -> dict:
        return dict(zip(stage.hosts, stage_releases(s, stage, f"verify:{stage.name}")))
    return hooks.around(s, r, stage, "verify", lambda: verify_stage(s, stage), rids=live)


def run_rollback(s: Session, r: Releases, stage: Stage) -> str:
    """Back to the stage's previous good release (from the log); the release left is marked bad."""
    what = f"rollback:{stage.name}"
    current = live_release(s, stage, what)
    logs = s.hosts.each(stage.hosts, lambda t: read_log(t, s.layout), f"{what}: reading the release log",
                        wide=True)
    target = rollback_target(logs[0], stage.name, current)
    if not target:
        raise StepError(f"{what}: the release log of {stage.primary} names no earlier good release of "
                        f"{stage.name} than {current}; nothing to roll back to")
    rec = last_switch(logs[0], stage.name, target) or {}
    s.lock(stage.hosts, what)
    s.hosts.each(stage.hosts, lambda t: _rebuild_for_stage(t, s, stage, target), f"{what}: preparing {target}")
    bad = make_record(stage.name, current, (last_switch(logs[0], stage.name, current) or {}).get("revision", ""),
                      None, "bad")
    msg = switch_stage(s, stage, target, rec.get("revision", ""), "rollback", what, extra_records=[bad])
    note = ""
    if s.config.stage_database(stage) and not stage.restore_from:
        note = (f"; the database schema was NOT rolled back: {current}'s migrations stay applied "
                "(restore a backup from db_backup/ if they must go)")
    return msg + f"; {current} marked bad" + note + "\n   " + verify_stage(s, stage)


def _rebuild_for_stage(t, s: Session, stage: Stage, rid: str) -> None:
    """The stage-level build (build_command) of the release rolled back to. Its env file stays the one it ran
    with (written from stages.ini only if it has none), and so do its stage dirs (shared/<stage>/<id>, kept
    with the release, not emptied): a rollback returns to the release, its environment and its files."""
    text = read_text(t, s.layout.release_meta(rid))
    if not text:
        raise StepError(f"release {rid} is gone or was never completed there; nothing to roll back to")
    release = Release.from_json(text)
    if not is_built(t, s.layout, s.config, stage, release, keep_env=True, known=s.known_links):
        build_release(t, s.layout, s.config, stage, release, fresh_stage_dirs=False, keep_env=True)


def run_unlock(s: Session, r: Releases, stage: Stage, force: bool = False) -> str:
    """Remove the lock from the stage's hosts (and its database's backup host), saying whose it was; refused,
    unless forced, while its run is alive (live_runs: the rule the README states)."""
    what = f"unlock:{stage.name}"
    db = s.config.stage_database(stage)
    hosts = list(dict.fromkeys([*stage.hosts, *([db.backup_host] if db and db.backup_host else [])]))
    probes = s.hosts.each(hosts, lambda t: probe_lock(t, s.layout), f"{what}: reading the locks", wide=True)
    locked = [(h, holder, alive) for h, (present, holder, alive) in zip(hosts, probes) if present]
    if not locked:
        return f"no host of {stage.name} was locked"
    live = live_runs(locked)
    if live and not force:
        raise StepError(f"{what}: " + "; ".join(live.values()) + f"; wait for it (or stop it), then unlock "
                        f"again; doit {what} --force removes the lock anyway and ends what that run runs on the "
                        "hosts (a switch it leaves half-done is finished or undone by the next run)")
    tokens = {h: (holder or {}).get("token") for h, holder, _ in locked}
    found = s.hosts.each([h for h, _, _ in locked], lambda t: break_lock(
        t, s.layout, say=lambda text: print(text, flush=True), token=tokens[t.host]), what, wide=True)
    said = [f"{h}: removed the lock of {holder_text(x[0])}" + (" (alive: --force)" if live else "")
            + (f"; {x[1].text()}" if x[1].text() else "")
            for (h, _, _), x in zip(locked, found) if x is not False]
    return "; ".join(said) if said else f"no host of {stage.name} was locked"


def live_runs(locked: list[tuple]) -> dict[str, str]:
    """[(host, holder's info, its sessions alive on that host)] -> {holder: why its run is taken for alive}
    for each holder that is: on this machine, while its process is alive (pid and start time); on another
    machine, where its process cannot be checked from here, while a session it recorded is alive on one of
    the hosts (its connection is up). A holder with neither is stale (a killed deployer, a cancelled CI
    job): unlock removes its lock."""
    by: dict[str, tuple[dict | None, list, list]] = {}
    for host, holder, alive in locked:
        key = (holder or {}).get("token") or f"?{host}"
        entry = by.setdefault(key, (holder, [], []))
        entry[1].append(str(host))
        entry[2].extend((str(host), pid) for pid in alive)
    out = {}
    for key, (holder, hosts, sessions) in by.items():
        where = f"{'each of ' if len(hosts) > 1 else ''}{', '.join(hosts)} is locked by {holder_text(holder)}"
        here = alive_here(holder)
        if here:
            out[key] = f"{where}, a run alive on this machine"
        elif here is None and sessions:
            machine = (holder or {}).get("machine", "?")
            out[key] = (f"{where}, a run on {machine} (its process cannot be checked from here) whose session "
                        f"pid {sessions[0][1]} on {sessions[0][0]} is alive: it is still connected")
    return out


def unreachable(stage: Stage, host, exc: Exception) -> str:
    """A host status could not read: ssh's own last line when the host was not reached, else the error."""
    if isinstance(exc, CommandFailed) and exc.unreachable:
        why = next((ln.strip() for ln in reversed(exc.stderr.splitlines()) if ln.strip()), "no answer")
        return f"host {host} of stage {stage.name} is unreachable: {why}"
    text = str(exc)
    return f"host {host} of stage {stage.name}: {text[len(f'{host}: '):] if text.startswith(f'{host}: ') else text}"


def status_rows(s: Session) -> list[list[str]]:
    rows = []
    for stage in s.config.stages.values():
        def probe(t, stage=stage):
            return read_state(t, s, stage), read_log(t, s.layout)
        states = s.hosts.outcomes(list(stage.hosts), probe, wide=True)
        reached = [st for st in states if not isinstance(st, Exception)]
        intents = [st[0]["intent"] for st in reached if st[0]["intent"]]
        rids = {h: release_of(st[0]["link"]) or "-" for h, st in zip(stage.hosts, states)
                if not isinstance(st, Exception)}
        down = [unreachable(stage, h, st) for h, st in zip(stage.hosts, states) if isinstance(st, Exception)]
        log = reached[0][1] if reached else []
        logged = next((x.get("release") for x in reversed(log)
                       if x.get("stage") == stage.name and x.get("result") in ("ok", "rollback")), None)
        counts = Counter(rids.values())
        # the release most hosts run; on a tie, the one the release log says was switched to last
        main = ((logged if counts.get(logged) == max(counts.values()) else counts.most_common(1)[0][0]) if counts
                else "unreachable")
        rec = last_switch(log, stage.name, main)
        odd = [f"{h} has {x}" for h, x in rids.items() if x != main]
        agree = "; ".join(down) if not rids else (
            f"{len(rids)}/{len(stage.hosts)} agree" if not odd else "DISAGREE: " + "; ".join(odd))
        if rids and down:
            agree += "; " + "; ".join(down)
        unsafe = [(h, st[0]["unsafe"]) for h, st in zip(stage.hosts, states)
                  if not isinstance(st, Exception) and st[0]["unsafe"]]
        if unsafe:
            h, (path, to) = unsafe[0]
            agree = (f"UNSAFE: {h}: {s.layout.join(path)} is a symlink (to {to}): no link is written outside "
                     f"{s.layout.root}; make it a directory again")
        if intents:
            holder = switch_under_way(s, stage, intents)
            agree += (f"; switch to {intents[0].get('release')} under way on {len(intents)} host(s) by "
                      f"{holder_text(holder)}" if holder else
                      f"; HALF-DONE switch to {intents[0].get('release')} on {len(intents)} host(s) (its run "
                      f"died): the next deploy/promote of {stage.name} finishes or undoes it")
        agree += unfinished_migration(s, stage) + roles_text(stage)
        rows.append([stage.name, main, (rec or {}).get("revision", "")[:12], (rec or {}).get("time", ""),
                     f"{rec['user']}@{rec['deployer']}" if rec else "", agree])
    return rows


def roles_text(stage: Stage) -> str:
    """`; roles: app web1 web2 (primary web1), worker worker1`: each host's role, when the stage has roles."""
    if len(stage.roles) < 2:
        return ""
    return "; roles: " + ", ".join(
        f"{r.name} " + " ".join(f"{h}{' (primary)' if h == stage.primary else ''}" for h in r.hosts)
        for r in stage.roles)


def switch_under_way(s: Session, stage: Stage, intents: list[dict]) -> dict | None:
    """The holder of the stage's locks when that run is alive (live_runs): then a switch under an intent is
    under way, not left by a dead run."""
    probes = s.hosts.outcomes(list(stage.hosts), lambda t: probe_lock(t, s.layout), wide=True)
    locked = [(h, p[1], p[2]) for h, p in zip(stage.hosts, probes) if not isinstance(p, Exception) and p[0]]
    live = live_runs(locked)
    return next((holder for _, holder, _ in locked if (holder or {}).get("token") in live), None)


def unfinished_migration(s: Session, stage: Stage) -> str:
    """"; UNFINISHED migration ..." when a run began to migrate the stage's live database and did not
    record its end (migration_record.py); "" otherwise, or when the backup host cannot be asked."""
    from .steps.migration.migration_record import is_open, read_record
    db = s.config.stage_database(stage)
    if db is None or stage.restore_from or db.backup_host is None or not s.config.migrates(stage):
        return ""
    try:
        rec = s.hosts.one(db.backup_host, lambda t: read_record(t, s.layout, stage.name))
    except StepError:
        return ""
    if not is_open(rec):
        return ""
    how = (f", its restore of {db.name} from {rec['before']['file']} after the migration failed did not finish"
           if rec.get("restoring") else "")
    return f"; UNFINISHED migration of {rec['release']} on database {db.name}{how}: doit {stage.chain_task} finishes it"


def format_table(rows: list[list[str]]) -> str:
    head = ["stage", "release", "revision", "deployed", "by", "hosts"]
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(x, widths)).rstrip() for x in [head, *rows])


def run_rehearsal_report(s: Session, r: Releases, stage: Stage) -> str:
    """The rehearsal report of the release the stage runs (for a promoted stage: the release it would
    receive, the one its source stage runs), read from the rehearsing stage's primary host."""
    from .steps.migration.rehearsal import read_report
    from .steps.migration.rehearsal_guard import rehearsing_stage
    from .steps.migration.rehearsal_report import text_table
    what = f"rehearsal:{stage.name}"
    rs = rehearsing_stage(s.config, stage)
    if rs is None:
        raise StepError(f"{what}: no stage rehearses the database of {stage.name} (none has restore_from = "
                        f"{stage.database or '-'} up its promote_from chain)")
    if stage.promote_from:
        rid = live_release(s, s.config.stages[stage.promote_from], what)
    else:
        try:
            rid = live_release(s, stage, what)
        except StepError:
            rid = r.source_release_id()
    report = s.hosts.one(rs.primary, lambda t: read_report(t, s.layout, rid))
    if report is None:
        raise StepError(f"{what}: release {rid} has no rehearsal report on {rs.primary} "
                        f"({s.layout.rehearsal(rid)}); run doit deploy:{rs.name}")
    return f"{s.layout.rehearsal(rid)} on {rs.primary}\n" + text_table(report)
