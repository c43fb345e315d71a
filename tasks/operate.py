"""The operator commands: run:<stage> CMD, console:<stage> and logs:<stage> (docs/commands.md). They change
nothing the tool manages, so they take no lock (logs: beside a deploy is what an operator wants). Like
commands.py, no doit here; each returns the exit code the command ends with.

run: and logs: start one channel per host beside the run's session (Transport.popen: under the host's
watchdog, watchdog.py), print each line as it comes, prefixed by its host, and wait. Ctrl-C closes each
channel's stdin: the watchdog then ends the command's whole process tree on the host, so nothing is left
running there. console: is `ssh -t` with the run's own ssh options (the framed session has no terminal).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import localcmd
from .config import Host, Stage
from .errors import StepError
from .remote_shell import ssh_options
from .session import Session
from .steps.links import read_link, release_of
from .steps.operate import (
    console_argv,
    host_labels,
    log_argv,
    prefixed,
    run_argv,
    select_hosts,
    ssh_console,
    worst,
)
from .transport import Transport
from .watchdog import parse_ident

HOSTS_VAR = "DEPLOY_HOSTS"
STOP_WAIT = 20.0   # seconds a stopped channel may take to end before its ssh is killed
INTERRUPTED = 130  # a shell's exit status after Ctrl-C


def run_command(s: Session, stage: Stage, argv: Sequence[str]) -> int:
    """CMD in the live release of the stage, with its env, on its primary host (its first: a `primary =`
    key does not exist yet) or on the hosts DEPLOY_HOSTS names; the worst host's exit status."""
    what = f"run:{stage.name}"
    if not argv:
        raise StepError(f"{what}: name the command after it, e.g. doit {what} python manage.py check")
    hosts = select_hosts(stage, s.environ.get(HOSTS_VAR), what, every=False)
    rids = live_releases(s, stage, hosts, what)
    codes = follow(s, stage, hosts, lambda h: run_argv(s.layout, stage, rids[h], argv), what, "the command")
    return INTERRUPTED if codes is None else codes


def follow_logs(s: Session, stage: Stage) -> int:
    """log_command on every host of the stage (or those DEPLOY_HOSTS names) until Ctrl-C (then 0), or
    until it ended on every host by itself (the worst exit status)."""
    what = f"logs:{stage.name}"
    if not stage.log_argv:
        raise StepError(f"{what}: log_command is not set; set it in [stage:{stage.name}] or [project], e.g. "
                        "log_command = tail -F shared/log/app.log (run in deploy_root on each host)")
    hosts = select_hosts(stage, s.environ.get(HOSTS_VAR), what, every=True)
    codes = follow(s, stage, hosts, lambda h: log_argv(s.layout, stage), what, "log_command")
    return 0 if codes is None else codes


def open_console(s: Session, stage: Stage, stdin=None) -> int:
    """console_command in the live release on the primary host (or the one host DEPLOY_HOSTS names), with
    the operator's terminal; without one (a pipe), stdin is forwarded as it is. Its exit status."""
    what = f"console:{stage.name}"
    hosts = select_hosts(stage, s.environ.get(HOSTS_VAR), what, every=False)
    if len(hosts) != 1:
        raise StepError(f"{what}: a console is opened on one host, and DEPLOY_HOSTS names {len(hosts)}; name one")
    if not stage.console_argv:
        raise StepError(f"{what}: console_command is empty; set it in [stage:{stage.name}] or [project] "
                        "(its default is python manage.py shell)")
    host = hosts[0]
    argv = console_argv(s.layout, stage, live_releases(s, stage, hosts, what)[host])
    if not host.local:
        project = s.config.project
        tty = (stdin or sys.stdin).isatty()
        argv = ssh_console(host, ssh_options(project.ssh_config, project.ssh_fast_kex), argv, tty)
    return localcmd.interactive(argv)


def live_releases(s: Session, stage: Stage, hosts: Sequence[Host], what: str) -> dict[Host, str]:
    """The release each host runs for the stage (its link's target). StepError naming every host that
    cannot be reached or has none: then nothing runs anywhere."""
    found = s.hosts.outcomes(list(hosts), lambda t: read_link(t, s.layout, stage.link), wide=True)
    problems = []
    for h, target in zip(hosts, found):
        if isinstance(target, Exception):
            text = str(target)
            problems.append(text if text.startswith(f"{h}: ") else f"{h}: {text}")
        elif release_of(target) is None:
            problems.append(f"{h}: stage {stage.name} has no live release there ({stage.link} is missing); "
                            f"run doit {stage.chain_task}")
    if problems:
        raise StepError(f"{what}: " + "; ".join(problems) + "; nothing was run (DEPLOY_HOSTS can leave a host out)")
    return {h: release_of(target) for h, target in zip(hosts, found)}


class Lines:
    """Whole lines of many hosts, each prefixed by its host: stdout's to stdout, stderr's to stderr. Once
    closed (Ctrl-C), none: what the hosts' shells say while their commands are ended ("Terminated") is not
    the commands' output."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._closed = False

    def put(self, stream: str, label: str, line: str) -> None:
        out = sys.stdout if stream == "out" else sys.stderr
        with self._mutex:
            if not self._closed:
                out.write(prefixed(label, line) + "\n")
                out.flush()

    def close(self) -> None:
        with self._mutex:
            self._closed = True


@dataclass
class Channel:
    host: Host
    label: str
    proc: subprocess.Popen
    pumps: list[threading.Thread] = field(default_factory=list)


def _start(t: Transport, argv: list[str], label: str, lines: Lines) -> Channel:
    ch = Channel(t.host, label, t.popen(argv))
    for pipe, stream in ((ch.proc.stdout, "out"), (ch.proc.stderr, "err")):
        # over ssh the watchdog's first stderr line names its process on the host: not the command's
        ident = stream == "err" and not t.host.local
        ch.pumps.append(threading.Thread(target=_pump, args=(pipe, stream, label, lines, ident), daemon=True))
    for th in ch.pumps:
        th.start()
    return ch


def _pump(pipe, stream: str, label: str, lines: Lines, ident: bool) -> None:
    for raw in pipe:
        line = raw.decode(errors="replace").rstrip("\n").rstrip("\r")
        if ident:
            ident = False
            if parse_ident(line):
                continue
        lines.put(stream, label, line)


def follow(s: Session, stage: Stage, hosts: Sequence[Host], argv_of: Callable[[Host], list[str]], what: str,
           name: str) -> int | None:
    """argv_of(host) on each host at once, its lines printed as they come, until every one ended: the
    worst exit status (a line on stderr for each host that failed); None when Ctrl-C (or SIGTERM, a
    cancelled CI job) stopped them."""
    labels, lines, signals = host_labels(stage.hosts), Lines(), Interrupts()
    channels: list[Channel] = []
    with signals:
        try:
            started = s.hosts.outcomes(list(hosts), lambda t: _start(t, argv_of(t.host), labels[t.host], lines))
            channels = [c for c in started if isinstance(c, Channel)]
            failed = [f"{h}: {x}" if not str(x).startswith(f"{h}: ") else str(x)
                      for h, x in zip(hosts, started) if isinstance(x, Exception)]
            if failed:
                stop(channels)
                raise StepError(f"{what}: " + "; ".join(failed) + "; stopped on every host")
            signals.arm()   # a signal that came while the channels started (each is stopped now) raises here
            for ch in channels:
                ch.proc.wait()
        except KeyboardInterrupt:
            signals.armed = False   # another signal now waits for the channels' end as this one does
            lines.close()
            left = stop(channels)
            print(f"{what}: interrupted; {name} ended on every host" if not left else
                  f"{what}: interrupted; {name} may still run on {', '.join(left)} (its ssh did not end within "
                  f"{STOP_WAIT:g}s and was killed)", file=sys.stderr, flush=True)
            return None
        finally:
            for ch in channels:
                for th in ch.pumps:
                    th.join(timeout=5)
    for ch in channels:
        if ch.proc.returncode:
            print(f"{what}: {ch.label} exited {ch.proc.returncode}", file=sys.stderr, flush=True)
    return worst([ch.proc.returncode for ch in channels])


class Interrupts:
    """SIGINT and SIGTERM while channels run: noted while they start (a channel half started is never lost),
    KeyboardInterrupt once armed. Only the main thread handles signals; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.got, self.armed, self._old = False, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._on) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _on(self, signum, _frame) -> None:
        self.got = True
        if self.armed:
            raise KeyboardInterrupt

    def arm(self) -> None:
        self.armed = True
        if self.got:
            raise KeyboardInterrupt


def stop(channels: Sequence[Channel]) -> list[str]:
    """End each channel: over ssh by closing its stdin (the host's watchdog ends the command's tree, then the
    channel ends); here by SIGTERM. The labels of those that did not end within STOP_WAIT (killed then)."""
    for ch in channels:
        if ch.proc.poll() is None:
            if ch.host.local:
                ch.proc.terminate()
            else:
                try:
                    ch.proc.stdin.close()
                except OSError:
                    pass
    deadline, left = time.monotonic() + STOP_WAIT, []
    for ch in channels:
        try:
            ch.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            ch.proc.kill()
            ch.proc.wait()
            left.append(ch.label)
    return left
