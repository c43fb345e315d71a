"""switch: a stage moved to a release on all its hosts, batch by batch, or on none.

Every host is checked first (release ready and built for the stage, shared links in place), by one command
that also reads its link and any intent left there. Then an intent is written on every host (stage, release,
that host's previous link, the run's token), and each batch is switched by rename (links.py), reloaded and
health-checked, per host. A host that fails any of these goes back to its previous release at once; when
more than max_fail hosts failed, every host goes back. The release log gets the outcome on every host, and
only then is the intent removed: a switch is done when its last effect is recorded (invariant 7).

An intent left by a dead run makes the next switch finish it (the same release: reload, health check and
log again) or undo it (another release: every host back on the link it had before), and say which.
Rollback is this same step towards an earlier release.
"""
from __future__ import annotations

import json

from .. import failpoints
from ..config import Stage
from ..errors import StepError
from ..progress import Progress
from ..transport import Transport
from .cleanup import clean_releases
from .common import json_or_none, write_file
from .environment import app_command
from .health import check_health, health_url
from .links import known_link, release_of, remember_link, set_link, switch_link
from .releaselog import append_record, make_record

# $1 link, $2 intent file, $3 the link's target when this run knows it ("=<target>", or "-": no link; then
# no readlink runs), "" to read it (readlink runs only for a symlink); for a switch to a release also $4
# its dir, $5 its ready marker, $6 the stage's built marker, then the shared paths that must be linked into
# it. Prints the link's target, the readiness lines (ready 0|1, built <id>, missing <path>...) and, after a
# separator, the intent if any.
STATE = r'''link=$1; intent=$2; t=
case $3 in =*) t=${3#=};; -) ;; *) [ -L "$link" ] && t=$(readlink -- "$link");; esac
echo "link $t"
if [ $# -gt 3 ]; then
  rel=$4; ready=$5; marker=$6; shift 6
  [ -f "$ready" ] && echo "ready 1" || echo "ready 0"
  built=; { IFS= read -r built < "$marker"; } 2>/dev/null; echo "built $built"
  for p in "$@"; do [ -L "$rel/$p" ] && [ -e "$rel/$p" ] || echo "missing $p"; done
fi
echo "--intent--"; if [ -e "$intent" ]; then cat -- "$intent" 2>/dev/null; fi; true'''


def parse_state(text: str) -> dict:
    """STATE's output -> {"link": target or None, "intent": dict or None, "ready": bool, "built": id,
    "missing": [paths]}."""
    head, _, intent = text.partition("--intent--\n")
    facts: dict = {"link": None, "ready": False, "built": "", "missing": [], "intent": None}
    for line in head.splitlines():
        key, _, value = line.partition(" ")
        if key == "link":
            facts["link"] = value.strip() or None
        elif key == "ready":
            facts["ready"] = value == "1"
        elif key == "built":
            facts["built"] = value.strip()
        elif key == "missing":
            facts["missing"].append(value)
    parsed = json_or_none(intent)
    facts["intent"] = parsed if isinstance(parsed, dict) else None
    return facts


def read_state(t: Transport, session, stage: Stage, rid: str | None = None) -> dict:
    """The stage's link and intent on a host; with rid, also whether that release can be switched to."""
    layout = session.layout
    known, target = known_link(t, stage.link)
    argv = ["sh", "-c", STATE, "sh", layout.link(stage.link), layout.intent(stage.name),
            ("-" if target is None else "=" + target) if known else ""]
    if rid:
        project = session.config.project
        argv += [layout.release(rid), layout.ready(rid), layout.built_marker(stage.name),
                 *project.shared_dirs, *project.shared_files]
    out = t.run(argv)
    facts = parse_state(out)
    head = out.partition("--intent--\n")[0].splitlines()
    if all(line.partition(" ")[0] in ("link", "ready", "built", "missing") for line in head):
        remember_link(t, stage.link, facts["link"])   # (a target with a newline would show in another line)
    return facts


def previous_links(facts: dict, rid: str) -> dict:
    """{host: its state} -> {host: the link to put it back on}. A half-done switch of this very release goes
    on from where it was: an intent knows its host's previous link, and a host that finished its part before
    the run died (intent removed, link on rid) had the one the intents name, not the release it runs now."""
    left = [f["intent"]["previous"] for f in facts.values() if f["intent"] and f["intent"].get("release") == rid]
    return {h: f["intent"]["previous"] if f["intent"] else
            (left[0] if left and release_of(f["link"]) == rid else f["link"]) for h, f in facts.items()}


def switch_stage(session, stage: Stage, rid: str, revision: str, result: str, what: str,
                 backups: list[str] | None = None, extra_records: list[dict] | None = None) -> str:
    """Move the stage to rid on every host or none; result is what the release log records (ok, rollback)."""
    session.lock(stage.hosts, what)
    facts = dict(zip(stage.hosts, session.hosts.each(stage.hosts, lambda t: _switchable(session, stage, rid, t),
                                                     f"{what} (nothing was switched)")))
    note = settle_intents(session, stage, rid, what, facts)
    if note.startswith("; undid"):  # the links moved back: read them again
        facts = dict(zip(stage.hosts, session.hosts.each(stage.hosts, lambda t: read_state(t, session, stage),
                                                         f"{what}: reading the links")))
    previous = previous_links(facts, rid)
    prev_rid = release_of(next(iter(previous.values())))
    intent = {"stage": stage.name, "release": rid, "revision": revision, "result": result,
              "token": session.token, "what": what}
    session.hosts.each(stage.hosts, lambda t: write_file(t, session.layout.intent(stage.name), json.dumps(
        {**intent, "previous": previous[t.host]}, sort_keys=True).encode(), "644", public=True),
        f"{what}: writing the intent")
    failpoints.hit("switch.after_intent")

    def go_live(t: Transport):
        switch_link(t, session.layout, stage.link, rid)
        try:
            failpoints.hit("switch.after_rename", t.host)
            if stage.reload_command:
                t.run(app_command(session.layout, stage.name, rid, list(stage.reload_argv)))
            failpoints.hit("switch.after_reload", t.host)
            problem = check_health(health_url(stage.health_url, t.host), stage.health_timeout,
                                   stage.health_headers) if stage.health_url else None
            if problem:
                raise StepError(f"health check failed: {problem}")
        except Exception:
            _put_back(session, stage, t, previous[t.host])
            raise

    done, failed = [], []
    progress = Progress(what, len(stage.hosts))
    with session.deferred_signals() as interrupted:
        for batch in session.batches(stage):
            with progress:
                results = session.hosts.outcomes(batch, go_live, progress)
            done += [h for h, r in zip(batch, results) if not isinstance(r, Exception)]
            failed += [(h, r) for h, r in zip(batch, results) if isinstance(r, Exception)]
            if len(failed) > stage.max_fail or (interrupted() and len(done) + len(failed) < len(stage.hosts)):
                session.hosts.outcomes(done, lambda t: _put_back(session, stage, t, previous[t.host]))
                try:
                    _log(session, stage.hosts, [make_record(stage.name, rid, revision, prev_rid, "failed")], stage)
                except StepError:
                    pass  # a host that cannot be logged on is among the failures named below
                if interrupted():
                    raise StepError(f"{what}: interrupted; every host of {stage.name} that had switched was "
                                    "put back on its previous release (undone)")
                problems = "; ".join(str(r) if str(r).startswith(str(h)) else f"{h}: {r}" for h, r in failed)
                raise StepError(f"{what}: {problems}; every host of {stage.name} is back on its previous release")
        failpoints.hit("switch.before_log")
        _log(session, done, [make_record(stage.name, rid, revision, prev_rid, result, backups),
                             *(extra_records or [])], stage)
        _log(session, [h for h, _ in failed], [make_record(stage.name, rid, revision, prev_rid, "failed")], stage)
        if interrupted():
            note += "; interrupted after every host had switched: the switch was finished, not undone"
    note += f"; {len(failed)} host(s) failed and stay on the previous release (max_fail = {stage.max_fail})" \
        if failed else ""
    return f"{stage.link} -> {rid} on {len(done)} host(s){note}"


def _switchable(session, stage: Stage, rid: str, t: Transport) -> dict:
    facts = read_state(t, session, stage, rid)
    if not facts["ready"]:
        raise StepError(f"release {rid} is not built there; run doit build:{stage.name}")
    if facts["built"] != rid:
        raise StepError(f"release {rid} is not built for stage {stage.name}; run doit build:{stage.name}")
    if facts["missing"]:
        raise StepError(f"{', '.join(facts['missing'])} not linked into {rid} from shared/ (create it under "
                        f"{session.layout.shared}, then run doit build:{stage.name})")
    return facts


def settle_intents(session, stage: Stage, rid: str, what: str, facts: dict) -> str:
    """An intent of a dead run for ANOTHER release is undone on every host that has one (its link back to
    the previous target, reloaded, the release logged as failed); one for this release is finished by the
    switch that follows. facts: read_state of every host. Returns what was done, for the summary."""
    left = [(h, f["intent"]) for h, f in facts.items() if f["intent"] and f["intent"].get("token") != session.token]
    if not left:
        return ""
    other = dict((h, i) for h, i in left if i.get("release") != rid)

    def undo(t: Transport):
        i = other[t.host]
        _put_back(session, stage, t, i.get("previous"))
        append_record(t, session.layout, make_record(stage.name, i.get("release", "?"), i.get("revision", ""),
                                                     release_of(i.get("previous")), "failed", token=i.get("token")))
        t.run(["rm", "-f", "--", session.layout.intent(stage.name)])
    if other:
        session.hosts.each(list(other), undo, f"{what}: undoing a half-done switch")
        return f"; undid the half-done switch to {next(iter(other.values())).get('release')} left by a dead run"
    return f"; finished the half-done switch to {rid} left by a dead run ({left[0][1].get('what', '?')})"


def _put_back(session, stage: Stage, t: Transport, target: str | None) -> None:
    set_link(t, session.layout, stage.link, target)
    old = release_of(target)
    if old and stage.reload_command:
        t.call(app_command(session.layout, stage.name, old, list(stage.reload_argv)))


def _log(session, hosts, records: list[dict], stage: Stage) -> None:
    """Append the records, clean up old releases (never one a link or a rollback needs), and only then
    remove the intent: the record is the switch's last effect."""
    links = [s.link for s in session.config.stages.values()]
    project = session.config.project

    def one(t: Transport):
        for rec in records:
            append_record(t, session.layout, {**rec, "token": session.token})
        failpoints.hit("switch.after_log", t.host)
        t.run(["rm", "-f", "--", session.layout.intent(stage.name)])
        clean_releases(t, session.layout, links, project.keep_releases, venvs=project.build == "pip")
    if hosts:
        session.hosts.each(list(hosts), one, "release log")
