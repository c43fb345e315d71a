"""switch: a stage moved to a release (and its env version) on all its hosts, batch by batch, or on none.

Every host is checked first (release ready and built for the stage, an env version recorded for it, shared
links in place, no directory on the way to the link a symlink), by one command that also reads its link
and any intent left there. Then an intent is written on every host (stage, release, env version, that
host's previous link and the env the release had, the run's token), and each batch is switched by rename
(links.py: the release's env file for the stage, then the link), reloaded and health-checked, per host. A
host that fails any of these goes back to its previous release (and the release to its previous env) at
once, through a new connection if its own died; when more than max_fail hosts failed, every host goes back.
The release log gets the outcome on every host, and only then, once every host has its record, are the
intents removed: a switch is done when its last effect is recorded (invariant 7).

Every command that changes a host runs only while this run still holds the host's lock (lock.guarded): a
run whose lock was taken from it (`doit unlock --force`) touches that host no more. A host that could not
be put back, or whose outcome could not be recorded, keeps its intent, and the run says what each host
runs; the next run finishes (the same release and env: reload, health check and log again) or undoes
(another: every host back on the link and env it had) what an intent of a dead run left, and says which.
Rollback is this same step towards an earlier release.
"""
from __future__ import annotations

import json

from .. import failpoints
from ..config import Stage
from ..errors import StepError
from ..layout import ENV_TOKEN_RE, is_release_id
from ..progress import Progress
from ..transport import CommandFailed, Transport
from .cleanup import clean_releases
from .common import json_or_none, last_line
from .environment import app_command, env_token
from .health import check_health, health_url
from .links import UnsafeLink, known_link, release_of, remember_link, set_link, switch_link, unsafe_message
from .lock import LOST, LockLost, guarded
from .releaselog import make_record

__all__ = ["read_state", "parse_state", "plan_hosts", "previous_links", "settle_intents", "switch_stage",
           "set_link", "switch_link"]

# $1 deploy_root, $2 the link (relative to it), $3 the intent file, $4 the link's target when this run knows
# it ("=<target>", or "-": no link; then no readlink runs), "" to read it (readlink runs only for a symlink);
# for a switch to a release also $5 its dir, $6 its ready marker, $7 the stage's built marker, $8 its env
# dir, $9 the stage, then the shared paths that must be linked into it. Prints "unsafe <dir> <target>" when
# a directory on the way to the link is a symlink, the link's target, "notlink" when something else is in
# its place, the readiness lines (ready 0|1, built <id>, env <version recorded> <version of <stage>.env:
# "?" when no version is it>, missing <path>...) and, after a separator, the intent if any. Builtins but
# readlink (and cat for an intent).
STATE = r'''root=$1; link=$2; intent=$3; l=$1/$2; p=$1; t=
set -f; IFS=/; for c in ${2%/*}; do p=$p/$c; if [ -L "$p" ]; then
  unset IFS; echo "unsafe ${p#"$root/"} $(readlink -- "$p")"; break; fi; done; unset IFS; set +f
case $4 in =*) t=${4#=};; -) ;; *) [ -L "$l" ] && t=$(readlink -- "$l");; esac
echo "link $t"
if [ -e "$l" ] && [ ! -L "$l" ]; then echo notlink; fi
if [ $# -gt 4 ]; then
  rel=$5; ready=$6; marker=$7; d=$8; st=$9; shift 9
  [ -f "$ready" ] && echo "ready 1" || echo "ready 0"
  built=; { IFS= read -r built < "$marker"; } 2>/dev/null; echo "built $built"
  v=; { read -r v x < "$d/$st.built"; } 2>/dev/null; case $v in *[!0-9a-f]*) v=;; esac
  [ ${#v} -eq 12 ] && [ -f "$d/$st.$v.env" ] || v=
  cur=
  if [ -e "$d/$st.env" ]; then cur=?
    for f in "$d/$st".*.env; do w=${f#"$d/$st."}; w=${w%.env}; case $w in *[!0-9a-f]*) continue;; esac
      if [ ${#w} -eq 12 ] && [ "$f" -ef "$d/$st.env" ]; then cur=$w; break; fi; done
  fi
  echo "env $v $cur"
  for p in "$@"; do [ -L "$rel/$p" ] && [ -e "$rel/$p" ] || echo "missing $p"; done
fi
echo "--intent--"; if [ -e "$intent" ]; then cat -- "$intent" 2>/dev/null; fi; true'''
# $1 the intent file, $2 its JSON (no secret), $3 the release's env file for the stage and $4 the version
# to keep it as when no version names it yet ("" ""): the way back for a put-back is a file that stays
INTENT = ('[ -z "$3" ] || [ -e "$4" ] || ln -- "$3" "$4" || exit; umask 022; '
          'printf "%s" "$2" > "$1.tmp" && mv -f -- "$1.tmp" "$1"')
APPEND = 'printf "%s" "$2" >> "$1"'     # one write(2) with O_APPEND: appenders never interleave in a line
KEYS = ("link", "ready", "built", "env", "missing", "unsafe", "notlink")


def parse_state(text: str) -> dict:
    """STATE's output -> {"link": target or None, "intent": dict or None, "ready": bool, "built": id, "env":
    version recorded, "env_live": the version <stage>.env is ("?": none is, "": no such file), "missing":
    [paths], "unsafe": [dir, its target] or None, "notlink": bool}."""
    head, _, intent = text.partition("--intent--\n")
    facts: dict = {"link": None, "ready": False, "built": "", "env": "", "env_live": "", "missing": [],
                   "unsafe": None, "notlink": False, "intent": None}
    for line in head.splitlines():
        key, _, value = line.partition(" ")
        if key == "link":
            facts["link"] = value.strip() or None
        elif key == "ready":
            facts["ready"] = value == "1"
        elif key == "built":
            facts["built"] = value.strip()
        elif key == "env":
            recorded, _, live = value.partition(" ")
            facts["env"], facts["env_live"] = recorded.strip(), live.strip()
        elif key == "missing":
            facts["missing"].append(value)
        elif key == "unsafe" and facts["unsafe"] is None:
            path, _, target = value.partition(" ")
            facts["unsafe"] = [path, target]
        elif key == "notlink":
            facts["notlink"] = True
    parsed = json_or_none(intent)
    facts["intent"] = parsed if isinstance(parsed, dict) else None
    return facts


def read_state(t: Transport, session, stage: Stage, rid: str | None = None) -> dict:
    """The stage's link and intent on a host; with rid, also whether that release can be switched to."""
    layout = session.layout
    known, target = known_link(t, stage.link)
    argv = ["sh", "-c", STATE, "sh", layout.root, stage.link, layout.intent(stage.name),
            ("-" if target is None else "=" + target) if known else ""]
    if rid:
        project = session.config.project
        argv += [layout.release(rid), layout.ready(rid), layout.built_marker(stage.name),
                 layout.join("releases", rid, ".deploy-env"), stage.name, *project.shared_dirs, *project.shared_files]
    out = t.run(argv)
    facts = parse_state(out)
    head = out.partition("--intent--\n")[0].splitlines()
    if not facts["unsafe"] and all(line.partition(" ")[0] in KEYS for line in head):
        remember_link(t, stage.link, facts["link"])   # (a target with a newline would show in another line)
    return facts


def _same(intent: dict | None, rid: str, env: str) -> bool:
    """The intent is of a switch to this release and env version (an intent of an older version of the
    tool names no env: the same)."""
    return bool(intent) and intent.get("release") == rid and intent.get("env", env) == env


def plan_hosts(facts: dict, rid: str) -> dict:
    """{host: its state} -> {host: {"previous": the link to put it back on, "env": the version to make live,
    "env_before": the version the release's env file was ("" for none), "keep": a new name to keep an env
    file that no version names yet, or ""}}. A half-done switch of this very release (and env) goes on
    from where it was: an intent knows its host's way back, and a host that finished its part before the
    run died (intent removed, link on rid) had the one the intents name, not what it runs now."""
    left = [f["intent"] for f in facts.values() if _same(f["intent"], rid, f.get("env", ""))]
    plan = {}
    for h, f in facts.items():
        env, live = f.get("env", ""), f.get("env_live", "")
        if _same(f["intent"], rid, env):
            previous, before = f["intent"].get("previous"), f["intent"].get("env_before", live)
        elif left and not f["intent"] and release_of(f["link"]) == rid and live == env:
            previous, before = left[0].get("previous"), left[0].get("env_before", live)
        else:
            previous, before = f["link"], live
        keep = env_token() if before == "?" else ""
        plan[h] = {"previous": previous, "env": env, "env_before": keep or before or "", "keep": keep}
    return plan


def previous_links(facts: dict, rid: str) -> dict:
    """{host: its state} -> {host: the link to put it back on} (plan_hosts)."""
    return {h: p["previous"] for h, p in plan_hosts(facts, rid).items()}


class HostFailed(StepError):
    """A host's part of the switch failed; `back` says how its put-back went (None: back, and reloaded
    unless `note` says otherwise)."""

    def __init__(self, error: Exception, back: str | None, note: str = ""):
        super().__init__(str(error) + note)
        self.back = back


def switch_stage(session, stage: Stage, rid: str, revision: str, result: str, what: str,
                 backups: list[str] | None = None, extra_records: list[dict] | None = None) -> str:
    """Move the stage to rid on every host or none; result is what the release log records (ok, rollback)."""
    session.lock(stage.hosts, what)
    facts = _check_all(session, stage, rid, what)
    note = settle_intents(session, stage, rid, what, facts)
    if note.startswith("; undid"):  # the links moved back: read them again
        facts = _check_all(session, stage, rid, what)
    plan = plan_hosts(facts, rid)
    prev_rid = release_of(next(iter(plan.values()))["previous"])
    intent = {"stage": stage.name, "release": rid, "revision": revision, "result": result,
              "token": session.token, "what": what}
    session.hosts.each(stage.hosts, lambda t: _write_intent(session, stage, rid, t, {**intent, **plan[t.host]}),
                       f"{what}: writing the intent")
    failpoints.hit("switch.after_intent")

    def back(t: Transport, never_took: bool = False) -> tuple[str | None, str]:
        return _put_back(session, stage, t, rid, plan[t.host]["previous"], plan[t.host]["env_before"], never_took)

    def go_live(t: Transport):
        never_took = False     # the release's reload failed by its own exit status: it never took over
        try:
            switch_link(t, session.layout, stage.link, rid, _env_pair(session, stage, rid, plan[t.host]["env"]),
                        guard=_guard(session))
            failpoints.hit("switch.after_rename", t.host)
            if stage.reload_command:
                try:
                    _reload(session, stage, t, rid)
                except CommandFailed as exc:
                    never_took = not exc.unreachable and 0 < exc.retcode < 126
                    raise
            failpoints.hit("switch.after_reload", t.host)
            problem = check_health(health_url(stage.health_url, t.host), stage.health_timeout,
                                   stage.health_headers) if stage.health_url else None
            if problem:
                raise StepError(f"health check failed: {problem}")
        except (StepError, CommandFailed) as exc:
            raise HostFailed(exc, *back(t, never_took)) from None

    done, failed = [], []
    progress = Progress(what, len(stage.hosts))
    with session.deferred_signals() as interrupted:
        for batch in session.batches(stage):
            with progress:
                results = session.hosts.outcomes(batch, go_live, progress)
            done += [h for h, r in zip(batch, results) if not isinstance(r, Exception)]
            failed += [(h, r) for h, r in zip(batch, results) if isinstance(r, Exception)]
            if len(failed) > stage.max_fail or (interrupted() and len(done) + len(failed) < len(stage.hosts)):
                backs = dict(zip(done, [b if isinstance(b, Exception) else b[0]
                                        for b in session.hosts.outcomes(done, back)]))
                went = {h: _back_of(backs[h] if h in backs else dict(failed).get(h)) for h in stage.hosts}
                _undone(session, stage, rid, revision, prev_rid, what, failed, went, interrupted())
        failpoints.hit("switch.before_log")
        went = {h: _back_of(r) for h, r in failed}
        ok = [make_record(stage.name, rid, revision, prev_rid, result, backups), *(extra_records or [])]
        undone = [make_record(stage.name, rid, revision, prev_rid, "failed")]
        unsettled = {h: b for h, b in went.items() if b is not None}
        unsettled.update(_log(session, stage, {**{h: ok for h in done},
                                               **{h: undone for h, b in went.items() if b is None}}))
        if unsettled:
            head = f"{what}: {_problems(failed)}; " if failed else f"{what}: "
            raise StepError(head + _not_settled(session, stage, unsettled))
        if interrupted():
            note += "; interrupted after every host had switched: the switch was finished, not undone"
    note += f"; {len(failed)} host(s) failed and stay on the previous release (max_fail = {stage.max_fail})" \
        if failed else ""
    return f"{stage.link} -> {rid} on {len(done)} host(s){note}"


def _check_all(session, stage: Stage, rid: str, what: str) -> dict:
    return dict(zip(stage.hosts, session.hosts.each(stage.hosts, lambda t: _switchable(session, stage, rid, t),
                                                    f"{what} (nothing was switched)")))


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


def _guard(session):
    return lambda argv: guarded(argv, session.layout.lock, session.token)


def _env_pair(session, stage: Stage, rid: str, version: str, if_there: bool = False) -> tuple[str, str]:
    """SWITCH's env arguments: the release's env file for the stage and the version to make it ("-": remove
    it; "" leave it). if_there (a put-back): only a version that is there (one a dead run's intent on
    another host names may not be)."""
    env = session.layout.release_env(rid, stage.name)
    if not version:
        return env, "-"
    if not ENV_TOKEN_RE.match(version):
        return env, ""
    return env, ("?" if if_there else "") + session.layout.env_version(rid, stage.name, version)


def _write_intent(session, stage: Stage, rid: str, t: Transport, intent: dict) -> None:
    keep = intent.pop("keep")
    layout = session.layout
    pair = (layout.release_env(rid, stage.name), layout.env_version(rid, stage.name, keep)) if keep else ("", "")
    _run_guarded(session, t, ["sh", "-c", INTENT, "sh", layout.intent(stage.name),
                              json.dumps(intent, sort_keys=True), *pair])


def _run_guarded(session, t: Transport, argv: list[str]) -> str:
    code, out, err = t.call(guarded(argv, session.layout.lock, session.token))
    if code == LOST:
        raise LockLost(f"{t.host}: {last_line(err)}")
    if code != 0:
        raise CommandFailed(t.host, argv, code, err)
    return out


def _reload(session, stage: Stage, t: Transport, rid: str) -> None:
    """The stage's reload_command in the release, with the env it now runs with there."""
    _run_guarded(session, t, app_command(session.layout, stage.name, rid, list(stage.reload_argv), live=True))


def _put_back(session, stage: Stage, t: Transport, rid: str, target: str | None, env_before: str,
              never_took: bool = False) -> tuple[str | None, str]:
    """The host back on its previous link, rid's env file back to the version it was, and the previous
    release reloaded; through a new connection when the host's own is gone. (None, note) when that is done,
    else (what went wrong, "": the host stays as it is; its intent stays). A failed reload of the previous
    release leaves the host unsettled, unless rid's own reload had failed by its exit status (never_took: the
    app never left the previous release): then it is back, and the note says so."""
    for attempt in (1, 2):
        try:
            set_link(t, session.layout, stage.link, target, _env_pair(session, stage, rid, env_before, True),
                     guard=_guard(session))
            old = release_of(target)
            if old and stage.reload_command:
                try:
                    _reload(session, stage, t, old)
                except CommandFailed as exc:
                    if exc.unreachable:
                        raise
                    failed = f"the reload of {old} failed too ({_short(exc, t)})"
                    return (None, f" (put back on {old}; {failed})") if never_took else (
                        f"its link is back on {old}, but {failed}", "")
            return None, ""
        except LockLost:
            return "this run no longer holds its lock there (removed by doit unlock --force?), so it left it " \
                "as it is", ""
        except UnsafeLink as exc:
            return _short(exc, t), ""
        except CommandFailed as exc:
            if not exc.unreachable or attempt == 2:
                return f"it could not be put back ({_short(exc, t)})", ""
            session.connections.drop(t.host)     # its session died (killed, a dropped connection): a new one
            try:
                t = session.connections.get(t.host)
            except CommandFailed as again:
                return f"it could not be put back ({_short(again, t)})", ""
    return "it could not be put back", ""


def _short(exc: Exception, t: Transport) -> str:
    text = str(exc)
    return text[len(f"{t.host}: "):] if text.startswith(f"{t.host}: ") else text


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
            back: dict, interrupted: bool) -> None:
    """After a failed (or interrupted) switch: the hosts that are back get their `failed` record and lose
    their intent; the others keep theirs. Raises the run's error, saying what each host runs."""
    records = {h: [make_record(stage.name, rid, revision, prev_rid, "failed")] for h, b in back.items() if b is None}
    unsettled = {h: b for h, b in back.items() if b is not None}
    unsettled.update(_log(session, stage, records))
    head = f"{what}: interrupted" if interrupted else f"{what}: {_problems(failed)}"
    if not unsettled:
        if interrupted:
            raise StepError(f"{head}; every host of {stage.name} that had switched was put back on its previous "
                            "release (undone)")
        raise StepError(f"{head}; every host of {stage.name} is back on its previous release")
    raise StepError(f"{head}; " + _not_settled(session, stage, unsettled))


def _not_settled(session, stage: Stage, unsettled: dict) -> str:
    """What each host runs now (its link read again), and why some are not settled."""
    def read(t: Transport):
        code, out, _ = t.call(["readlink", "--", session.layout.link(stage.link)])
        return release_of(out.strip()) if code == 0 else None
    runs = session.hosts.outcomes(list(stage.hosts), read)
    told = []
    for h, r in zip(stage.hosts, runs):
        now = f"{h}: cannot tell what it runs ({r})" if isinstance(r, Exception) else f"{h} runs {r or 'nothing'}"
        told.append(f"{now}: {unsettled[h]}" if h in unsettled else now)
    return (f"NOT every host of {stage.name} is settled: {'; '.join(told)}. The intent stays on "
            f"{', '.join(str(h) for h in unsettled)}: the next doit {stage.chain_task} finishes or undoes the "
            "switch (reload, health check, release log)")


def settle_intents(session, stage: Stage, rid: str, what: str, facts: dict) -> str:
    """An intent of a dead run for ANOTHER release or env is undone on every host that has one (its link and
    the release's env file back, reloaded, the release logged as failed); one for this release and env is
    finished by the switch that follows. facts: _switchable of every host. Returns what was done."""
    left = [(h, f["intent"]) for h, f in facts.items() if f["intent"] and f["intent"].get("token") != session.token]
    if not left:
        return ""
    other = {h: _checked_intent(session, stage, h, i) for h, i in left if not _same(i, rid, facts[h]["env"])}

    def undo(t: Transport):
        i = other[t.host]
        problem, _ = _put_back(session, stage, t, i["release"], i.get("previous"), i.get("env_before", ""))
        if problem:
            raise StepError(f"{t.host}: {problem}")
        rec = make_record(stage.name, i["release"], i.get("revision", ""), release_of(i.get("previous")), "failed",
                          token=i.get("token"))
        _run_guarded(session, t, ["sh", "-c", APPEND, "sh", session.layout.log, json.dumps(rec, sort_keys=True) + "\n"])
        _run_guarded(session, t, ["rm", "-f", "--", session.layout.intent(stage.name)])
    if other:
        session.hosts.each(list(other), undo, f"{what}: undoing a half-done switch")
        return f"; undid the half-done switch to {next(iter(other.values())).get('release')} left by a dead run"
    return f"; finished the half-done switch to {rid} left by a dead run ({left[0][1].get('what', '?')})"


def _checked_intent(session, stage: Stage, host, intent: dict) -> dict:
    """An intent read from a host, before the undo acts on it: its release, way back and env version are
    what a switch writes (a damaged or forged one would point the link anywhere)."""
    rid, previous, env = intent.get("release"), intent.get("previous"), intent.get("env_before", "")
    back_ok = previous is None or (isinstance(previous, str) and is_release_id(release_of(previous) or "") and
                                   previous == session.layout.link_target(stage.link, release_of(previous)))
    if not (isinstance(rid, str) and is_release_id(rid) and back_ok and (env in ("", "?") or (
            isinstance(env, str) and ENV_TOKEN_RE.match(env)))):
        raise StepError(f"{host}: {session.layout.intent(stage.name)} is damaged (release {rid!r}, previous "
                        f"{previous!r}); check {stage.link} there, remove the intent, then run again")
    return intent


def _log(session, stage: Stage, records: dict) -> dict:
    """Append each host's records, then (once every host has them) remove the intents and clean up old
    releases (never one a link or a rollback needs): the record is the switch's last effect, and an intent
    stays until every host is recorded. Returns {host: problem} for each host that keeps its intent."""
    if not records:
        return {}
    hosts = list(records)
    links = [s.link for s in session.config.stages.values()]
    project = session.config.project

    def append(t: Transport):
        lines = "".join(json.dumps({**rec, "token": session.token}, sort_keys=True) + "\n" for rec in records[t.host])
        _run_guarded(session, t, ["sh", "-c", APPEND, "sh", session.layout.log, lines])
        failpoints.hit("switch.after_log", t.host)

    problems = {h: f"its release-log record could not be written ({r})"
                for h, r in zip(hosts, session.hosts.outcomes(hosts, append)) if isinstance(r, Exception)}
    if problems:
        return {**problems, **{h: "logged, but the switch did not finish on every host" for h in hosts
                               if h not in problems}}
    removed = session.hosts.outcomes(hosts, lambda t: _run_guarded(session, t, ["rm", "-f", "--",
                                                                                 session.layout.intent(stage.name)]))
    problems = {h: f"logged, but its intent could not be removed ({r})" for h, r in zip(hosts, removed)
                if isinstance(r, Exception)}
    if not problems:
        session.hosts.each(hosts, lambda t: clean_releases(t, session.layout, links, project.keep_releases,
                                                           venvs=project.build == "pip"), "release cleanup")
    return problems
