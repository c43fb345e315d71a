"""The way back of a switch: a host put back on its previous link, its release's env file back to the version
it was, the previous release reloaded (through a new connection when the host's own died); an intent left
by a dead run for another release undone; and, when a host cannot be settled, what each host runs. Every
command here that changes a host runs only while this run holds the host's lock (lock.guarded).

A reload runs at most the stage's reload_timeout, under coreutils' `timeout` on the host: its own process
group, all of it ended when the time is up (SIGTERM, SIGKILL KILL_AFTER seconds later), so a reload_command
that never returns (an app server started in the foreground) fails the host instead of hanging the run,
and leaves nothing running. A second Ctrl-C ends it the same way, at once (session.deferred_signals).
"""
from __future__ import annotations

import contextlib
import json
import sys
import threading
import time

from ..config import Stage
from ..errors import StepError
from ..layout import ENV_TOKEN_RE, is_release_id
from ..runtime.common import last_line
from ..runtime.lock import LOST, LockLost, guarded
from ..transport import CommandFailed, Transport
from .environment import app_command
from .links import UnsafeLink, release_of, set_link
from .releaselog import make_record
from .switch_state import same_switch

APPEND = 'printf "%s" "$2" >> "$1"'     # one write(2) with O_APPEND: appenders never interleave in a line
KILL_AFTER = 5   # seconds between the SIGTERM of a reload that ran out of time and the SIGKILL
RELOAD_PID = "dst-reload"   # the first stderr line of RELOAD: "dst-reload <pid>"
# $1 reload_timeout, then the reload's argv: says which process runs it, then becomes coreutils' timeout (the
# same pid), which puts the argv in a process group of its own and ends that whole group when the time is up
# (exit 124; 137 when it had to SIGKILL). ($$ makes the session run it in a sh of its own, not by eval.)
RELOAD = f'printf "{RELOAD_PID} %s\\n" "$$" >&2; exec timeout -k {KILL_AFTER} "$@"'
# $1 that pid: while it is still the reload's timeout, its timer goes off now (SIGALRM): the same end
STOP = '[ "$(cat "/proc/$1/comm" 2>/dev/null)" = timeout ] && kill -ALRM "$1"'
# $1 shared/<stage>.env, $2 its target through the stage's link: removed when the link is (no dangling link)
UNPUBLISH = 'if [ -L "$1" ] && [ "$(readlink -- "$1")" = "$2" ]; then rm -f -- "$1"; fi'


def lock_guard(session):
    """What makes a command run only while the run's lock is still its own (set_link's guard)."""
    return lambda argv: guarded(argv, session.layout.lock, session.token)


def env_pair(session, stage: Stage, rid: str, version: str, if_there: bool = False) -> tuple[str, str]:
    """SWITCH's env arguments: the release's env file for the stage and the version to make it ("-": remove
    it; "" leave it). if_there (a put-back): only a version that is there (one a dead run's intent on
    another host names may not be)."""
    env = session.layout.release_env(rid, stage.name)
    if not version:
        return env, "-"
    if not ENV_TOKEN_RE.match(version):
        return env, ""
    return env, ("?" if if_there else "") + session.layout.env_version(rid, stage.name, version)


def run_guarded(session, t: Transport, argv: list[str]) -> str:
    code, out, err = t.call(guarded(argv, session.layout.lock, session.token))
    if code == LOST:
        raise LockLost(f"{t.host}: {last_line(err)}")
    if code != 0:
        raise CommandFailed(t.host, argv, code, err)
    return out


class ReloadCutOff(CommandFailed):
    """A reload ended by its reload_timeout, or by a second Ctrl-C: it may have taken over partly."""

    def __init__(self, host, argv, retcode: int, stderr: str, why: str):
        super().__init__(host, argv, retcode, stderr)
        self.args = (f"{host}: {why}",)


def reload_release(session, stage: Stage, t: Transport, rid: str) -> None:
    """The stage's reload_command in the release, with the env it now runs with there, for at most its
    reload_timeout (then ReloadCutOff, nothing of it left running); while it runs, session.waits names it,
    and can stop it."""
    reload = Reload(session, stage, t, rid)
    with reload.waiting():
        code, _, err = t.stream_lines(reload.sent, reload.cut.on_line)
    reload.outcome(code, err)


class Reload:
    """A host's reload: its command (guarded by the run's lock), how a second Ctrl-C stops it, and what its
    answer means. Sent alone (reload_release), or as the last command of a one-host switch's exchange
    (switch.py): waiting() around the exchange that runs it, outcome() with its answer."""

    def __init__(self, session, stage: Stage, t: Transport, rid: str):
        self.session, self.stage, self.t = session, stage, t
        self.role = stage.role_of(t.host)   # the host's role's reload_command
        self.argv = ["sh", "-c", RELOAD, "sh", f"{stage.reload_timeout}s",
                     *app_command(session.layout, stage.name, rid, list(self.role.reload_argv), live=True)]
        self.sent = guarded(self.argv, session.layout.lock, session.token)
        self.cut = _Cut(t)
        self.started = time.monotonic()

    @contextlib.contextmanager
    def waiting(self):
        self.started = time.monotonic()
        with self.session.waits.on(self.t.host, "reload", self.role.reload_command, stop=self.cut.stop):
            yield

    def outcome(self, code: int, err: str) -> None:
        """Nothing when the reload exited 0; else LockLost, ReloadCutOff (its time was up, or a second
        Ctrl-C stopped it) or CommandFailed."""
        stage, role, argv = self.stage, self.role, self.argv
        err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith(RELOAD_PID + " "))
        if code == LOST:
            raise LockLost(f"{self.t.host}: {last_line(err)}")
        if code in (124, 137) and (self.cut.stopped or time.monotonic() - self.started >= stage.reload_timeout):
            why = "stopped by a second Ctrl-C" if self.cut.stopped else \
                f"did not finish within {stage.reload_timeout}s (reload_timeout)"
            raise ReloadCutOff(self.t.host, argv, code, err, f"reload ({role.reload_command}) {why}; its processes "
                               "there were ended")
        if code != 0:
            raise CommandFailed(self.t.host, role.reload_argv or argv, code, err)


class _Cut:
    """How a running reload is stopped from another thread: its pid comes on its first stderr line; stop()
    (the signal handler's) sends STOP through a second channel, or as soon as the pid is known."""

    def __init__(self, t: Transport):
        self.t, self.pid, self.stopped = t, "", False
        self._mutex = threading.Lock()

    def on_line(self, stream: str, line: str) -> None:
        if stream == "err" and line.startswith(RELOAD_PID + " ") and not self.pid:
            with self._mutex:
                self.pid = line.split()[1]
                go = self.stopped
            if go:
                self._send()

    def stop(self) -> None:
        with self._mutex:
            self.stopped, go = True, bool(self.pid)
        if go:
            threading.Thread(target=self._send, daemon=True).start()

    def _send(self) -> None:
        try:
            proc = self.t.popen(["sh", "-c", STOP, "sh", self.pid])
            proc.wait(timeout=30)   # its stdin stays open until it ended (a second channel ends when it closes)
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()
        except Exception as exc:   # the reload's timeout still ends it
            print(f"{self.t.host}: could not stop the reload ({exc}); it ends at its reload_timeout",
                  file=sys.stderr, flush=True)


def put_back(session, stage: Stage, t: Transport, rid: str, target: str | None, env_before: str,
              never_took: bool = False, unpublish: bool = False) -> tuple[str | None, str]:
    """The host back on its previous link, rid's env file back to the version it was, and the previous
    release reloaded; through a new connection when the host's own is gone. (None, note) when that is done,
    else (what went wrong, "": the host stays as it is; its intent stays). A failed reload of the previous
    release leaves the host unsettled, unless rid's own reload had failed by its exit status (never_took: the
    app never left the previous release): then it is back, and the note says so. unpublish: where the stage
    had no release (target None), shared/<stage>.env goes with the link (a switch undone for good; not the
    undo of a dead run's, which the switch that follows publishes again)."""
    for attempt in (1, 2):
        try:
            set_link(t, session.layout, stage.link, target, env_pair(session, stage, rid, env_before, True),
                     guard=lock_guard(session), known=session.known_links)
            if target is None and unpublish:   # no release here: what an app server would load goes too
                run_guarded(session, t, ["sh", "-c", UNPUBLISH, "sh", session.layout.env_file(stage.name),
                                         session.layout.env_file_target(stage.link, stage.name)])
            old = release_of(target)
            if old and stage.role_of(t.host).reload_command:
                try:
                    reload_release(session, stage, t, old)
                except CommandFailed as exc:
                    if exc.unreachable:
                        raise
                    failed = f"the reload of {old} failed too ({short(exc, t)})"
                    return (None, f" (put back on {old}; {failed})") if never_took else (
                        f"its link is back on {old}, but {failed}", "")
            return None, ""
        except LockLost:
            return "this run no longer holds its lock there (removed by doit unlock --force?), so it left it " \
                "as it is", ""
        except UnsafeLink as exc:
            return short(exc, t), ""
        except CommandFailed as exc:
            if not exc.unreachable or attempt == 2:
                return f"it could not be put back ({short(exc, t)})", ""
            session.connections.drop(t.host)     # its session died (killed, a dropped connection): a new one
            try:
                t = session.connections.get(t.host)
            except CommandFailed as again:
                return f"it could not be put back ({short(again, t)})", ""
    return "it could not be put back", ""


def short(exc: Exception, t: Transport) -> str:
    text = str(exc)
    return text[len(f"{t.host}: "):] if text.startswith(f"{t.host}: ") else text


def not_settled(session, stage: Stage, unsettled: dict) -> str:
    """What each host runs now (its link read again), and why some are not settled."""
    def read(t: Transport):
        code, out, _ = t.call(["readlink", "--", session.layout.link(stage.link)])
        return release_of(out.strip()) if code == 0 else None
    runs = session.hosts.outcomes(list(stage.hosts), read, wide=True)
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
    other = {h: checked_intent(session, stage, h, i) for h, i in left if not same_switch(i, rid, facts[h]["env"])}

    def undo(t: Transport):
        i = other[t.host]
        problem, _ = put_back(session, stage, t, i["release"], i.get("previous"), i.get("env_before", ""))
        if problem:
            raise StepError(f"{t.host}: {problem}")
        rec = make_record(stage.name, i["release"], i.get("revision", ""), release_of(i.get("previous")), "failed",
                          token=i.get("token"))
        run_guarded(session, t, ["sh", "-c", APPEND, "sh", session.layout.log, json.dumps(rec, sort_keys=True) + "\n"])
        run_guarded(session, t, ["rm", "-f", "--", session.layout.intent(stage.name)])
    if other:
        session.hosts.each(list(other), undo, f"{what}: undoing a half-done switch")
        return f"; undid the half-done switch to {next(iter(other.values())).get('release')} left by a dead run"
    return f"; finished the half-done switch to {rid} left by a dead run ({left[0][1].get('what', '?')})"


def checked_intent(session, stage: Stage, host, intent: dict) -> dict:
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
