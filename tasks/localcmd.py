"""The deploying machine's own commands, through plumbum's `local`: git and hg (the source), pip and uv
(the wheelhouse), `ssh -O` (a tunnel on a host's master connection).

What runs on a host goes through transport.py instead (one framed `ssh host sh` session per host, or
LocalTransport for `hosts = local`). Here, as there, a command is an argv list and never a shell string.
Each command gets this process's environment as it is when the command starts (plumbum's `local.env` is a
copy taken at import, so os.environ is laid over it), its program is looked up on that PATH, and it reads
no terminal (stdin is /dev/null): with its output captured, a prompt would hang the run unseen.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, NamedTuple, Sequence

from .errors import StepError

if TYPE_CHECKING:   # plumbum itself is imported by the first command: a run that starts none (a backup, a
    # restore, a switch) does not pay for it (~30 ms of start-up: it imports urllib.request, ssl, logging)
    from plumbum.commands.base import BaseCommand
    from plumbum.machines.local import PlumbumLocalPopen

NOT_FOUND = 127   # the exit code a shell gives a program it cannot find; a transport's too
TIMED_OUT = 124   # what coreutils' timeout exits with


class Done(NamedTuple):
    """A finished command: its exit code and what it wrote (bytes: git archive writes a tar)."""
    code: int
    out: bytes
    err: bytes

    @property
    def stdout(self) -> str:
        return self.out.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.decode(errors="replace")

    def last_line(self) -> str:
        """The last non-empty line of stderr, else of stdout ("?" when both are empty)."""
        for text in (self.stderr, self.stdout):
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                return lines[-1]
        return "?"


def command(argv: Sequence[str]) -> BaseCommand | None:
    """argv as a plumbum command, its program found on the PATH as it is now; None when it is not there."""
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=os.environ.get("PATH", os.defpath))
    if program is None or not os.access(program, os.X_OK):
        return None
    from plumbum import local
    return local[program][list(argv[1:])]


def call(argv: Sequence[str], cwd: str | os.PathLike | None = None, timeout: float | None = None,
         env: dict[str, str] | None = None) -> Done:
    """Run argv here and wait: its exit code and output. A missing program is exit 127, no end within
    timeout seconds is exit 124 (the command killed), each with a line on stderr saying so. env: variables
    set for it, over this process's environment."""
    cmd = command(argv)
    if cmd is None:
        return Done(NOT_FOUND, b"", f"{argv[0]}: command not found".encode())
    proc = cmd.popen(stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Done(TIMED_OUT, b"", f"{argv[0]}: no answer within {timeout:g}s".encode())
    return Done(proc.returncode, out, err)


def run(argv: Sequence[str], what: str, cwd: str | os.PathLike | None = None) -> Done:
    """call, for a command that must succeed: a failure is the one-line StepError "<what>: <its last line>"."""
    done = call(argv, cwd)
    if done.code != 0:
        raise StepError(f"{what}: {done.last_line()}")
    return done


def start(argv: Sequence[str]) -> PlumbumLocalPopen | None:
    """argv started here and left running, its output discarded (the caller waits for it); None when its
    program is not there."""
    cmd = command(argv)
    if cmd is None:
        return None
    return cmd.popen(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     env=dict(os.environ))


def interactive(argv: Sequence[str]) -> int:
    """argv here with this process's terminal (stdin, stdout and stderr as they are: a console); its exit
    status (a shell's: 128 + N when killed by signal N). Ctrl-C belongs to it while it runs: this process
    lets it pass (the program, or ssh's remote end, decides what it means)."""
    cmd = command(argv)
    if cmd is None:
        print(f"{argv[0]}: command not found", file=sys.stderr)
        return NOT_FOUND
    sys.stdout.flush()
    sys.stderr.flush()
    main = threading.current_thread() is threading.main_thread()
    # a handler, not SIG_IGN: an ignored signal stays ignored across exec, a caught one is reset to default
    old = signal.signal(signal.SIGINT, lambda *_: None) if main else None
    try:
        code = cmd.popen(stdin=None, stdout=None, stderr=None, env=dict(os.environ)).wait()
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
    return 128 - code if code < 0 else code
