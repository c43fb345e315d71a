"""A doit run held at an exact line: started with a `pause` failpoint armed (tasks/failpoints.py), it stops
itself (SIGSTOP) when it gets there, and stays stopped while the test does what it must do meanwhile (kill
it, kill a host, run a second doit beside it, send it a signal); SIGCONT lets it go on.

    proc = start_doit(project, "deploy:test", env={failpoints.ENV: "build.after_unpack=pause"})
    assert wait_paused(proc), "the run never reached build.after_unpack"

The wait is the kernel's (waitid for the stop), not a poll of the hosts for a state that may pass.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading

from .project import DOIT, PASSWORD_ENV, Project


def start_doit(p: Project, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """`doit args` as Project.doit runs it (its stages.ini, the password in its variable), not waited for;
    stdout and stderr piped as text unless popen says otherwise."""
    environ = dict(os.environ, STAGES_INI=str(p.ini), **{PASSWORD_ENV: p.password}, **(env or {}))
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([*DOIT, *args], cwd=p.workdir, env=environ, **popen)


def wait_paused(proc: subprocess.Popen, timeout: float = 300) -> bool:
    """Wait until the process stops itself at its `pause` failpoint: True; False if it ended first (or had
    not stopped within timeout). waitid(WNOWAIT) only looks: an ended process stays for Popen to reap, so
    its returncode is right."""
    seen: list = []

    def wait() -> None:
        try:
            seen.append(os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT))
        except ChildProcessError:      # reaped meanwhile (Popen.poll): it ended
            pass
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(timeout)
    return bool(seen) and seen[0].si_code == os.CLD_STOPPED


def go_on(proc: subprocess.Popen) -> None:
    """Let a paused run go on (SIGCONT)."""
    os.kill(proc.pid, signal.SIGCONT)


def end(proc: subprocess.Popen) -> None:
    """However far it got: continued if paused, killed, reaped (for a `finally`)."""
    if proc.poll() is None:
        go_on(proc)
        proc.kill()
        proc.communicate()
