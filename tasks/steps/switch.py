"""switch: a stage moved to a release (and its env version) on all its hosts, batch by batch, or on none.
Every role of the stage switches with it (session.batches: each role's batch); each host reloads and is
health-checked with its role's keys, and a failure puts every host of every role back (max_fail: the stage's).

Every host is checked first (release ready and built for the stage, an env version recorded for it, shared
links in place, no directory on the way to the link a symlink), by one command that also reads its link and
any intent left there. Then an intent is written on every host (stage, release, env version, that host's
previous link and the env the release had, the run's token), and each batch is switched by rename (links.py:
the release's env file for the stage, then the link), reloaded, its after_switch hook run (see hooks.py) and
health-checked, per host. A host that fails any of these goes back to its previous release (and the release to
its previous env) at once, through a new connection if its own died; when more than max_fail hosts failed,
every host goes back (a host where the stage had no release loses the link and shared/<stage>.env, and the
error says so). A reload runs at most reload_timeout (switch_back.py); while the switch waits, SIGINT and
SIGTERM are deferred (session.deferred_signals): the first names what it waits on, a second stops a reload as
its timeout would. The release log gets the outcome on every host, and only then, once every host has its
record, are the intents removed: a switch is done when its last effect is recorded (invariant 7).

Every command that changes a host runs only while this run still holds the host's lock (lock.guarded): a
run whose lock was taken from it (`doit unlock --force`) touches that host no more. A host that could not
be put back, or whose outcome could not be recorded, keeps its intent, and the run says what each host
runs; the next run finishes (the same release and env: reload, health check and log again) or undoes
(another: every host back on the link and env it had) what an intent of a dead run left, and says which.
Rollback is this same step towards an earlier release. The state it reads is in switch_state.py, the way
back (put-back, undo, what each host runs) in switch_back.py.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Callable

from .. import failpoints
from ..config import Stage
from ..errors import StepError
from ..progress import Progress
from ..runtime.common import last_line
from ..runtime.lock import LOST, LockLost, guarded
from ..session import Session
from ..transport import Cmd, CommandFailed, Transport, call_key
from .cleanup import remove_releases, scan_argv
from .facts import facts_argv
from .health import check_health, health_url
from .links import UnsafeLink, release_of, set_link, switch_link, unsafe_message
from .releaselog import make_record
from .switch_back import (
    APPEND,
    Reload,
    ReloadCutOff,
    env_pair,
    lock_guard,
    not_settled,
    put_back,
    reload_release,
    run_guarded,
    settle_intents,
)
from .switch_state import parse_state, plan_hosts, previous_links, read_state

__all__ = ["read_state", "parse_state", "plan_hosts", "previous_links", "settle_intents", "switch_stage",
           "set_link", "switch_link"]

# $1 the intent file, $2 its JSON (no secret), $3 the release's env file for the stage and $4 the version
# to keep it as when no version names it yet ("" ""): the way back for a put-back is a file that stays
INTENT = ('[ -z "$3" ] || [ -e "$4" ] || ln -- "$3" "$4" || exit; umask 022; '
          'printf "%s" "$2" > "$1.tmp" && mv -f -- "$1.tmp" "$1"')


class HostFailed(StepError):
    """A host's part of the switch failed; `back` says how its put-back went (None: back, and reloaded
    unless `note` says otherwise)."""

    def __init__(self, error: Exception, back: str | None, note: str = ""):
        super().__init__(str(error) + note)
        self.back = back


@dataclass
class Switch:
    """One switch under way: the stage, the release and, once the hosts are checked, each host's plan (its
    previous link, the env the release had and gets) and the release the stage ran before."""
    session: Session
    stage: Stage
    rid: str
    revision: str
    result: str
    what: str
    plan: dict = field(default_factory=dict)
    prev_rid: str | None = None
    renamed: dict = field(default_factory=dict)   # host -> None, or the rename's error, once sent with its intent
    reloaded: dict = field(default_factory=dict)  # host -> None, or the reload's error, once sent with its rename
    logged: dict = field(default_factory=dict)    # host -> (argvs, answers) of its record sent with its rename
    after_host: Callable[[Transport], None] | None = None   # after_switch on a host (steps/hooks.py)
    after_all: Callable[[], None] | None = None             # a local: after_switch, once
    backups: list | None = None                             # the backups a production migration took
    extra_records: list = field(default_factory=list)       # records logged beside the switch's own


def switch_stage(session: Session, stage: Stage, rid: str, revision: str, result: str, what: str,
                 backups: list[str] | None = None, extra_records: list[dict] | None = None,
                 after_host=None, after_all=None) -> str:
    """Move the stage to rid on every host or none; result is what the release log records (ok, rollback).
    after_host: the after_switch hook, run on each host after its reload and before its health check, a
    failure a failed reload; after_all: a local: one, run once when every batch switched, a failure puts
    every host back."""
    sw = Switch(session, stage, rid, revision, result, what, after_host=after_host, after_all=after_all,
                backups=backups, extra_records=list(extra_records or []))
    note = _check_and_settle(sw)
    session.switched_from.setdefault(stage.name, sw.prev_rid)
    # One host: its intent and its rename go in ONE exchange (the rename runs only once the intent is
    # written: "every host's intent before any rename" holds), apart when a test stops the deployer between.
    merged = len(stage.hosts) == 1 and not failpoints.armed("switch.after_intent")
    if not merged:
        _write_intents(sw)
    with session.deferred_signals(what) as interrupted:
        if merged:
            _write_intent_and_switch(sw)
        done, failed = _switch_batches(sw, interrupted)
        if sw.after_all is not None and done:
            try:
                sw.after_all()
            except StepError as exc:
                _undo_all(sw, done, [*failed, ("local", exc)], 0)
        failpoints.hit("switch.before_log")
        _record_outcome(sw, done, failed)
        if interrupted():
            note += "; interrupted after every host had switched: the switch was finished, not undone"
    note += f"; {len(failed)} host(s) failed and stay on the previous release (max_fail = {stage.max_fail})" \
        if failed else ""
    return f"{stage.link} -> {rid} on {len(done)} host(s){note}"


def _check_and_settle(sw: Switch) -> str:
    """Every host locked and checked, an intent a dead run left finished or undone, each host's plan made."""
    session, stage, rid, what = sw.session, sw.stage, sw.rid, sw.what
    session.lock(stage.hosts, what)
    facts = _check_all(session, stage, rid, what)
    note = settle_intents(session, stage, rid, what, facts)
    if note.startswith("; undid"):  # the links moved back: read them again
        facts = _check_all(session, stage, rid, what)
    sw.plan = plan_hosts(facts, rid)
    sw.prev_rid = release_of(next(iter(sw.plan.values()))["previous"])
    return note


def _intent_of(sw: Switch, host) -> dict:
    return {"stage": sw.stage.name, "release": sw.rid, "revision": sw.revision, "result": sw.result,
            "token": sw.session.token, "what": sw.what, **sw.plan[host]}


def _write_intents(sw: Switch) -> None:
    """The intent on every host before any link moves: the next run finishes or undoes what it names."""
    sw.session.hosts.each(sw.stage.hosts,
                          lambda t: _write_intent(sw.session, sw.stage, sw.rid, t, _intent_of(sw, t.host)),
                          f"{sw.what}: writing the intent", wide=True)
    failpoints.hit("switch.after_intent")


def _write_intent_and_switch(sw: Switch) -> None:
    """A stage of one host: its intent, then (only once the intent is written) its rename, in one exchange,
    and (only once the rename succeeded) its reload. An intent not written fails the switch as _write_intents
    does (nothing was switched); the rename's and the reload's outcomes are left for _go_live, which treats
    them as its own (a failed rename or reload puts the host back)."""
    session, stage, rid = sw.session, sw.stage, sw.rid
    host = stage.hosts[0]
    role = stage.role_of(host)
    # nothing between the rename and the record (no reload, hook or health check, no failpoint to stop at):
    # the record, the intent's removal and the cleanup's scan ride in the same exchange, each only once the
    # one before it succeeded; the host does them in order, so "intent before the rename, record before the
    # intent goes" holds as in separate exchanges
    ride = not (role.reload_command or role.health_url or sw.after_host or sw.after_all) and not any(
        failpoints.armed(f) for f in ("switch.after_rename", "switch.after_reload", "switch.before_log",
                                      "switch.after_log"))
    # else the reload rides after the rename (only once it succeeded), its lines read as they come (its pid:
    # a second Ctrl-C stops it); what its answer means is left for _go_live, as a reload of its own
    reloads = bool(role.reload_command) and not failpoints.armed("switch.after_rename")

    def one(t: Transport):
        intent = _intent_argv(session, stage, rid, _intent_of(sw, t.host))
        record = _log_commands(session, stage, {t.host: _ok_records(sw)}, t) if ride else []
        reload = Reload(session, stage, t, rid) if reloads else None
        answers: list = []
        try:
            env = env_pair(session, stage, rid, sw.plan[t.host]["env"])
            with reload.waiting() if reload else contextlib.nullcontext():
                before = switch_link(t, session.layout, stage.link, rid, env, guard=lock_guard(session),
                                     known=session.known_links, first=Cmd(intent),
                                     then=[Cmd(reload.sent, if_ok=True)] if reload else
                                     [Cmd(a, if_ok=True) for a in record],
                                     reads=_facts(session, stage, rid, t) if ride else (), answers=answers,
                                     on_line=reload.cut.on_line if reload else None)
        except (StepError, CommandFailed) as exc:   # written, but the rename failed: _go_live's to handle
            sw.renamed[t.host] = exc
            return
        if ride and before[0] == 0:
            sw.logged[t.host] = (record, answers)
        code, _, err = before
        if code == LOST:
            raise LockLost(f"{t.host}: {last_line(err)}")
        if code != 0:
            raise CommandFailed(t.host, intent, code, err)
        sw.renamed[t.host] = None
        if reload is not None:
            try:
                reload.outcome(answers[0][0], answers[0][2])
                sw.reloaded[t.host] = None
            except (StepError, CommandFailed) as exc:
                sw.reloaded[t.host] = exc
    session.hosts.each([host], one, f"{sw.what}: writing the intent")
    failpoints.hit("switch.after_intent")


def _switch_batches(sw: Switch, interrupted) -> tuple[list, list]:
    """(hosts switched, [(host, error)] of those put back), batch by batch. More than max_fail failures, or a
    signal before the last batch: every host goes back and the run stops (_undo_all raises)."""
    session, stage = sw.session, sw.stage
    done, failed = [], []
    progress = Progress(sw.what, len(stage.hosts), waits=session.waits)
    # a rename alone is one small exchange a host: every host of the batch at once; a reload, a hook or a
    # health check is work on the host: `parallel` hosts at a time
    wide = sw.after_host is None and not any(role.reload_command or role.health_url for role in stage.roles)
    for batch in session.batches(stage):
        with progress:
            results = session.hosts.outcomes(batch, lambda t: _go_live(sw, t), progress, wide=wide)
        done += [h for h, r in zip(batch, results) if not isinstance(r, Exception)]
        failed += [(h, r) for h, r in zip(batch, results) if isinstance(r, Exception)]
        # a second signal asked to stop waiting: the switch is undone, as when a host failed; but not once its
        # record went with its rename (_write_intent_and_switch): that switch is done, and it is finished
        recorded = any(answers and answers[0][0] == 0 for _, answers in sw.logged.values())
        if len(failed) > stage.max_fail or (interrupted() > 1 and not recorded) or (
                interrupted() and len(done) + len(failed) < len(stage.hosts)):
            _undo_all(sw, done, failed, interrupted())
    return done, failed


def _go_live(sw: Switch, t: Transport) -> None:
    """One host: its link renamed, the release reloaded and health-checked; on any failure, put back at once."""
    session, stage, rid = sw.session, sw.stage, sw.rid
    role = stage.role_of(t.host)   # its reload_command and health_url: the role's own, else the stage's
    never_took = False     # the release's reload failed by its own exit status: it never took over
    try:
        if t.host in sw.renamed:   # renamed with its intent already (_write_intent_and_switch)
            renamed = sw.renamed.pop(t.host)
            if renamed is not None:
                raise renamed
        else:
            switch_link(t, session.layout, stage.link, rid, env_pair(session, stage, rid, sw.plan[t.host]["env"]),
                        guard=lock_guard(session), known=session.known_links)
        failpoints.hit("switch.after_rename", t.host)
        if role.reload_command:
            try:
                if t.host in sw.reloaded:   # sent after its rename, in the same exchange
                    reloaded = sw.reloaded.pop(t.host)
                    if reloaded is not None:
                        raise reloaded
                else:
                    reload_release(session, stage, t, rid)
            except CommandFailed as exc:
                never_took = not exc.unreachable and 0 < exc.retcode < 126 and not isinstance(exc, ReloadCutOff)
                raise
        failpoints.hit("switch.after_reload", t.host)
        if sw.after_host is not None:
            sw.after_host(t)
        problem = None
        if role.health_url:
            # `ssh -G` (a local process) only when the url names {host}
            url = health_url(role.health_url, t.address()) if "{host}" in role.health_url else role.health_url
            with session.waits.on(t.host, "health check", url):
                problem = check_health(url, stage.health_timeout, stage.health_headers)
        if problem:
            raise StepError(f"health check failed: {problem}")
    except (StepError, CommandFailed) as exc:
        raise HostFailed(exc, *_put_back(sw, t, never_took)) from None


def _put_back(sw: Switch, t: Transport, never_took: bool = False) -> tuple[str | None, str]:
    plan = sw.plan[t.host]
    return put_back(sw.session, sw.stage, t, sw.rid, plan["previous"], plan["env_before"], never_took,
                    unpublish=True)


def _undo_all(sw: Switch, done: list, failed: list, interrupted: int) -> None:
    """Every switched host put back; then _undone records what each host runs and raises."""
    backs = dict(zip(done, [b if isinstance(b, Exception) else b[0]
                            for b in sw.session.hosts.outcomes(done, lambda t: _put_back(sw, t))]))
    went = {h: _back_of(backs[h] if h in backs else dict(failed).get(h)) for h in sw.stage.hosts}
    _undone(sw.session, sw.stage, sw.rid, sw.revision, sw.prev_rid, sw.what, failed, went, interrupted,
            {h: sw.plan[h]["previous"] for h in sw.stage.hosts})


def _record_outcome(sw: Switch, done: list, failed: list) -> None:
    """The release log: `ok` (or the result asked) where the host switched, `failed` where it went back.
    Raises naming each host that keeps its intent (not back, or not recorded)."""
    stage, rid, revision, prev_rid = sw.stage, sw.rid, sw.revision, sw.prev_rid
    went = {h: _back_of(r) for h, r in failed}
    ok = _ok_records(sw)
    undone = [make_record(stage.name, rid, revision, prev_rid, "failed")]
    unsettled = {h: b for h, b in went.items() if b is not None}
    unsettled.update(_log(sw.session, stage, {**{h: ok for h in done},
                                              **{h: undone for h, b in went.items() if b is None}}, live=rid,
                          sent=sw.logged))
    if unsettled:
        head = f"{sw.what}: {_problems(failed)}; " if failed else f"{sw.what}: "
        raise StepError(head + not_settled(sw.session, stage, unsettled))


def _ok_records(sw: Switch) -> list:
    """The release-log records of a host the switch moved (the result asked, e.g. ok or rollback)."""
    return [make_record(sw.stage.name, sw.rid, sw.revision, sw.prev_rid, sw.result, sw.backups), *sw.extra_records]


def _check_all(session, stage: Stage, rid: str, what: str) -> dict:
    return dict(zip(stage.hosts, session.hosts.each(stage.hosts, lambda t: _switchable(session, stage, rid, t),
                                                    f"{what} (nothing was switched)", wide=True)))


def _switchable(session, stage: Stage, rid: str, t: Transport) -> dict:
    facts = read_state(t, session, stage, rid)
    layout = session.layout
    if facts["unsafe"]:
        raise UnsafeLink(unsafe_message(t, layout, *facts["unsafe"]))
    if facts["notlink"]:
        raise StepError(f"{layout.link(stage.link)} is not a symlink (a directory or file is in its place); "
                        "move it away, then run again")
    if not facts["ready"]:
        raise StepError(f"release {rid} is not built there; run doit build:{stage.name}")
    if facts["built"] != rid or not facts["env"]:
        raise StepError(f"release {rid} is not built for stage {stage.name}; run doit build:{stage.name}")
    if facts["missing"]:
        raise StepError(f"{', '.join(facts['missing'])} not linked into {rid} from shared/ (create it under "
                        f"{layout.shared}, then run doit build:{stage.name})")
    return facts


def _write_intent(session, stage: Stage, rid: str, t: Transport, intent: dict) -> None:
    code, _, err = t.call(_intent_argv(session, stage, rid, intent))
    if code == LOST:
        raise LockLost(f"{t.host}: {last_line(err)}")
    if code != 0:
        raise CommandFailed(t.host, ["sh", "-c", INTENT], code, err)


def _intent_argv(session, stage: Stage, rid: str, intent: dict) -> list[str]:
    """INTENT as sent, guarded (it runs only while the run holds the lock)."""
    intent = dict(intent)
    keep = intent.pop("keep")
    layout = session.layout
    pair = (layout.release_env(rid, stage.name), layout.env_version(rid, stage.name, keep)) if keep else ("", "")
    return guarded(["sh", "-c", INTENT, "sh", layout.intent(stage.name), json.dumps(intent, sort_keys=True), *pair],
                   layout.lock, session.token)


def _back_of(result) -> str | None:
    """How a host's put-back went: None back (or never switched), else the problem."""
    if isinstance(result, HostFailed):
        return result.back
    if isinstance(result, Exception):   # the put-back itself raised (unreachable before it began)
        return f"it could not be put back ({result})"
    return result


def _problems(failed: list) -> str:
    return "; ".join(str(r) if str(r).startswith(str(h)) else f"{h}: {r}" for h, r in failed)


def _undone(session, stage: Stage, rid: str, revision: str, prev_rid: str | None, what: str, failed: list,
            back: dict, interrupted: int, previous: dict) -> None:
    """After a failed (or interrupted) switch: the hosts that are back get their `failed` record and lose
    their intent; the others keep theirs. Raises the run's error, saying what each host runs (previous:
    each host's link before the switch, None where the stage had none)."""
    records = {h: [make_record(stage.name, rid, revision, prev_rid, "failed")] for h, b in back.items() if b is None}
    unsettled = {h: b for h, b in back.items() if b is not None}
    unsettled.update(_log(session, stage, records))
    head = f"{what}: " + "; ".join(x for x in ("interrupted" if interrupted else "", _problems(failed)) if x)
    if not unsettled:
        raise StepError(f"{head}; {back_text(stage, rid, previous, bool(interrupted) and not failed)}")
    raise StepError(f"{head}; " + not_settled(session, stage, unsettled))


def back_text(stage: Stage, rid: str, previous: dict, interrupted: bool = False) -> str:
    """Where every host of the stage is after an undone switch, truly: on its previous release, or, where the
    stage had none (its first switch), without one: its link was removed (rid stays built for a rerun)."""
    none = [str(h) for h, target in previous.items() if release_of(target) is None]
    if not none:
        return (f"every host of {stage.name} that had switched was put back on its previous release (undone)"
                if interrupted else f"every host of {stage.name} is back on its previous release")
    kept = f"{rid} stays built, a rerun reuses it"
    if len(none) == len(previous):
        return (f"{stage.name} had no release before: its link {stage.link} was removed on every host, so the stage "
                f"has no live release; {kept}")
    back = [f"{h} is back on {release_of(target)}" for h, target in previous.items() if str(h) not in none]
    return (f"{'; '.join(back)}; {', '.join(none)} had no release of {stage.name} before: its link {stage.link} was "
            f"removed there, so {'it runs' if len(none) == 1 else 'they run'} none; {kept}")


def _log_commands(session, stage: Stage, records: dict, t: Transport) -> list[list[str]]:
    """A host's record appended, its intent removed and the cleanup's scan (each guarded by the lock)."""
    guard, layout = lock_guard(session), session.layout
    links = [s.link for s in session.config.stages.values()]
    return [guard(["sh", "-c", APPEND, "sh", layout.log, _lines(session, records, t)]),
            guard(["rm", "-f", "--", layout.intent(stage.name)]), scan_argv(layout, links, session.known_links, t)]


def _lines(session, records: dict, t: Transport) -> str:
    return "".join(json.dumps({**rec, "token": session.token}, sort_keys=True) + "\n" for rec in records[t.host])


def _facts(session, stage: Stage, live: str | None, t: Transport) -> list:
    """verify's facts of the live release (steps/facts.py), as reads to keep (while the run holds the host)."""
    argv = facts_argv(session.layout, session.config, stage, live) if live else None
    return [(call_key(argv), Cmd(argv))] if argv and t.held else []


def _log(session, stage: Stage, records: dict, live: str | None = None, sent: dict | None = None) -> dict:
    """Append each host's records, then (once every host has them) remove the intents and clean up old
    releases (never one a link or a rollback needs): the record is the switch's last effect, and an intent
    stays until every host is recorded. Returns {host: problem} for each host that keeps its intent.
    live: the release the switch made live, whose facts (verify's: steps/facts.py) ride with the last
    command each host gets here, their answer kept for verify (Transport.keep).
    Exchanges: a stage of one host gets its record, its intent's removal and the cleanup's scan in ONE
    (each runs only when the one before it succeeded; apart when the failpoint after the record is armed),
    or none, when they rode with its rename (sent: host -> their argvs and answers, _write_intent_and_switch);
    more hosts get their records in one, then (every host recorded) the removal and the scan in another.
    REMOVE, when the scan finds something to remove, is one more."""
    if not records:
        return {}
    hosts = list(records)
    links = [s.link for s in session.config.stages.values()]
    project, layout = session.config.project, session.layout
    stages = tuple(session.config.stages)   # their stage-dir generations go with their releases

    def facts(t: Transport) -> list:
        return _facts(session, stage, live, t)

    def clean(t: Transport, scanned: str) -> None:
        remove_releases(t, layout, links, project.keep_releases, scanned, venvs=project.build == "pip",
                        stages=stages, known=session.known_links, then=facts(t))

    if len(hosts) == 1 and not failpoints.armed("switch.after_log"):
        def in_one(t: Transport):
            if t.host in (sent or {}):
                return sent[t.host]
            argv = _log_commands(session, stage, records, t)
            answers = t.read_batch(facts(t), [Cmd(argv[0]), Cmd(argv[1], if_ok=True), Cmd(argv[2], if_ok=True)])
            if answers[0][0] == 255:   # the connection is gone: dropped (Executor.one), the host keeps its intent
                raise _failure(t.host, argv[0], answers[0])
            return argv, answers
        host = hosts[0]
        got = session.hosts.outcomes(hosts, in_one)[0]
        if isinstance(got, Exception):
            return {host: f"its release-log record could not be written ({got})"}
        argv, answers = got
        if answers[0][0] != 0:
            return {host: f"its release-log record could not be written ({_failure(host, argv[0], answers[0])})"}
        failpoints.hit("switch.after_log", host)   # passed (a trace lists it): the intent's removal was sent too
        if answers[1][0] != 0:
            return {host: f"logged, but its intent could not be removed ({_failure(host, argv[1], answers[1])})"}
        session.hosts.each(hosts, lambda t: clean(t, _output(t, argv[2], answers[2])), "release cleanup")
        return {}

    def append(t: Transport):
        run_guarded(session, t, ["sh", "-c", APPEND, "sh", layout.log, _lines(session, records, t)])
        failpoints.hit("switch.after_log", t.host)
    remove_intent = lock_guard(session)(["rm", "-f", "--", layout.intent(stage.name)])

    problems = {h: f"its release-log record could not be written ({r})"
                for h, r in zip(hosts, session.hosts.outcomes(hosts, append, wide=True)) if isinstance(r, Exception)}
    if problems:
        return {**problems, **{h: "logged, but the switch did not finish on every host" for h in hosts
                               if h not in problems}}

    def remove_and_scan(t: Transport) -> tuple[list[str], tuple[int, str, str]]:
        scan = scan_argv(layout, links, session.known_links, t)
        removed, scanned = t.read_batch(facts(t), [Cmd(remove_intent), Cmd(scan, if_ok=True)])
        _output(t, remove_intent, removed)
        return scan, scanned
    removed = session.hosts.outcomes(hosts, remove_and_scan, wide=True)
    problems = {h: f"logged, but its intent could not be removed ({r})" for h, r in zip(hosts, removed)
                if isinstance(r, Exception)}
    if not problems:
        session.hosts.each(hosts, lambda t: clean(t, _output(t, *removed[hosts.index(t.host)])), "release cleanup",
                           wide=True)
    return problems


def _failure(host, argv: list[str], answer: tuple[int, str, str]) -> Exception:
    """What a guarded command's answer that is not 0 means: the lock lost, else the command failed."""
    code, _, err = answer
    return LockLost(f"{host}: {last_line(err)}") if code == LOST else CommandFailed(host, argv, code, err)


def _output(t: Transport, argv: list[str], answer: tuple[int, str, str]) -> str:
    """A command's stdout, or its failure raised."""
    if answer[0] != 0:
        raise _failure(t.host, argv, answer)
    return answer[1]
