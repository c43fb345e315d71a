"""A run owns its remote work: what it starts on a host ends with it, and a later run finds and ends it.

Every session of a run (its one `ssh host sh`, remote_shell.py) and every second channel (transport.popen)
runs under WATCH on the host, three small processes around the work:

    O  sh -c WATCH dst-watch [ARGV...]    says "dst-watch <pid> <start> <boot id>" on stderr, waits for S
    |- R  relays the connection's stdin to S (cat); when that stdin ends while O still waits: `lost`
    `- S  the session's shell (or ARGV): its children are the commands in flight; ARGV done, S ends R

The connection's stdin ends when the deployer is gone (SIGKILLed, its ssh killed after a timeout, a hung
host that comes back after the deployer gave up on it) and when a run closes its session (then nothing is
in flight). R then ends every command in flight, its whole tree: frozen top-down with SIGSTOP (a stopped
process forks no more, so nothing escapes), then SIGTERM, then SIGKILL after 10 s. A command wrapped in
`let_finish` (production's migration: MySQL's DDL cannot be rolled back, and a killed client leaves its
ALTER running in the server anyway) is left to finish alone; its mark is SIGHUP ignored (SIG_IGN survives
exec, so /proc/<pid>/status shows it on the program itself).

A lock records the sessions of its run (pid, start time in clock ticks from /proc/<pid>/stat, boot id:
a reused pid is never taken for one). Before anyone breaks a lock (a dead deployer's, or `doit unlock`),
END waits for the commands that finish alone (up to a bound) and ends everything else those sessions run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from .hostside import script

# Shell functions shared by WATCH and END (Linux /proc; builtins only, except where a command is ended).
LIB = script("watch_lib.sh")

# sh -c WATCH dst-watch [ARGV...]: no ARGV runs a session's sh.
WATCH = LIB + script("watch.sh")

# $1 a lock's sessions file ("<pid> <start> <boot>" lines), $2 seconds to wait for what finishes alone.
# Tab-separated lines: "waiting <pid> <pid shown> <command>" before the wait, then "waited <pid> <seconds>"
# or, when it still runs after $2 s, "running <pid> <seconds>" and exit 3 (nothing ended); "ended <pid>
# <command>". A command that is a bare `sh` (a script run by the session) is shown by its first child.
END = LIB + script("watch_end.sh")

# ssh hands its command to the login shell, which may be fish or csh (no newline in quotes there): one line
WATCH_LINE = WATCH.replace("\n", "; ")
# what ssh runs for a session; its $0 is "sh", the name the session's commands had in their shell's messages
# ("sh: 1: cannot create ...") when an exec'd sh ran them
SESSION = "exec sh -c '" + WATCH_LINE.replace("'", "'\\''") + "' sh"
WAIT_BOUND = 600   # seconds a lock breaker waits for a dead run's command that finishes alone
_IDENT = re.compile(r"dst-watch (\d{1,10}) (\d{1,20}) ([0-9a-f-]{36})")


@dataclass(frozen=True)
class Watched:
    """One process O on a host, named so that a reused pid (or a reboot) is never taken for it."""
    pid: int
    start: int
    boot: str

    def line(self) -> str:
        return f"{self.pid} {self.start} {self.boot}"


def parse_ident(text: str) -> Watched | None:
    """The "dst-watch <pid> <start> <boot>" line WATCH says first on stderr; None when there is none."""
    m = _IDENT.search(text or "")
    return Watched(int(m.group(1)), int(m.group(2)), m.group(3)) if m else None


def watched(argv: Sequence[str]) -> list[str]:
    """argv run under WATCH (a second channel: its stdin ending early ends it)."""
    return ["sh", "-c", WATCH_LINE, "dst-watch", *argv]


def let_finish(argv: Sequence[str]) -> list[str]:
    """argv marked to finish alone when its run dies: no watchdog ends it, a lock breaker waits for it."""
    return ["sh", "-c", 'trap "" HUP; exec "$@"', "sh", *argv]


def end_argv(sessions_file: str, bound: int = WAIT_BOUND) -> list[str]:
    return ["sh", "-c", END, "sh", sessions_file, str(int(bound))]


@dataclass
class Ended:
    """What END did to a dead run's sessions: commands waited for (pid, command, seconds), ended (pid,
    command), and still running after the bound (pid, command, seconds): then nothing was ended."""
    waited: list[tuple[int, str, int]] = field(default_factory=list)
    ended: list[tuple[int, str]] = field(default_factory=list)
    running: list[tuple[int, str, int]] = field(default_factory=list)

    def text(self) -> str:
        def cmd(c: str) -> str:
            return " ".join(c.split()) or "?"
        parts = [f"still runs {cmd(c)} (pid {p}) after {s} s" for p, c, s in self.running]
        parts += [f"waited {s} s for {cmd(c)} (pid {p}) to finish" for p, c, s in self.waited]
        parts += [f"ended {cmd(c)} (pid {p})" for p, c in self.ended]
        return "; ".join(parts)


def parse_end(text: str) -> Ended:
    out, names = Ended(), {}
    for line in text.splitlines():
        verb, _, rest = line.partition("\t")
        pid, _, arg = rest.partition("\t")
        if not pid.isdigit():
            continue
        if verb == "waiting":
            shown, _, command = arg.partition("\t")
            names[int(pid)] = command
        elif verb in ("waited", "running") and arg.isdigit():
            getattr(out, verb).append((int(pid), names.get(int(pid), "?"), int(arg)))
        elif verb == "ended":
            out.ended.append((int(pid), arg))
    return out
