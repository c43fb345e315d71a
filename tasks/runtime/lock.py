"""lock: .deploy/lock on a host, holding who/when/what/pid/token as JSON, taken atomically.

The lock directory is made under a temporary name with its owner file already inside, then renamed into
place: a lock never exists without its owner (a full disk fails the take, it does not leave an anonymous
lock that refuses every later run), and of two runs racing for it exactly one rename wins.

A second run is refused with the holder's name. A lock whose holder ran on this same machine and whose
process is gone (its pid, with the start time the lock records) is stale (the deployer was killed): it is
broken by renaming it away, which only one run can do, since runs of one project on one machine are
serialised by the project's local lock.

The lock also records what its run started on the host (`sessions`: the run's watched processes there,
watchdog.py). Before a lock is broken, stale or by `doit unlock`, what they still run is ended, or waited
for when it finishes alone (a migration); a lock whose run still migrates after the bound stays.

`doit unlock` never ends a live run unless told to (--force): a holder on this machine is alive while its
process is; a holder on another machine, whose process cannot be checked from here, is alive while one of
the sessions it recorded is alive on a host (its connection is up). A run whose lock was taken from it
finds out at its next guarded command (guarded(): the command runs only while the lock still names this
run) and touches that host no more.
"""
from __future__ import annotations

import json
import os
import posixpath
import secrets
import socket

from ..errors import StepError
from ..hostside import script
from ..layout import Layout
from ..transport import Cmd, CommandFailed, Transport
from ..watchdog import LIB, WAIT_BOUND, Ended, end_argv, parse_end
from .common import read_text

LOST = 75   # the exit code of a guarded command whose run no longer holds the lock

# $1 the lock dir, $2 this session's line for `sessions` (or ""; "-": the session shell's own, which its
# watchdog set as $__dst_me: the take need not wait for the hello's answer), $3 the lock's directory, $4 a random
# suffix for the temporary lock, $5 the owner JSON (no secret: who, where, what, and the run's token, which
# the owner file shows anyone who can read it). Prints "taken", "held", or "unwritable", me, owner, mode,
# dir, error (tab-separated; dir: the nearest existing directory on the way, so the user learns who owns
# what it could not write). Shell builtins where they serve (the umask gives the modes, printf writes the
# files, find runs only when a dead take left a temporary lock): two programs run (mkdir, mv). On a host's
# first lock, ONE `mkdir -p` makes the lock's directory and $6 in it (the archives' directory, which the
# upload needs next), on its way to the temporary lock through $6/..: those two with the login's umask, as
# `mkdir -p` alone made them, the temporary lock with -m 755 (what umask 022 gives it).
TAKE = script("lock_take.sh")

# $1 lock dir, $2 this run's token: removed only when this run holds it
RELEASE = ('o=; { IFS= read -r o < "$1/owner.json"; } 2>/dev/null; '
           'case $o in *\'"token": "\'"$2"\'"\'*) rm -rf -- "$1";; esac')
# $1 lock dir, $2 this run's token, $3 a session line ("-": the session shell's own, $__dst_me): recorded
# only while this run holds the lock
RECORD = ('s=$3; [ "$s" != - ] || s=${__dst_me-}; case "$(cat "$1/owner.json" 2>/dev/null)" in '
          '*\'"token": "\'"$2"\'"\'*) [ -z "$s" ] || printf "%s\\n" "$s" >> "$1/sessions";; esac')


# $1 lock dir, $2 this run's token: put before a command's script by guarded()
HOLDS = ('o=; { IFS= read -r o < "$1/owner.json"; } 2>/dev/null; case $o in *\'"token": "\'"$2"\'"\'*) ;; '
         '*) echo "this run no longer holds the lock $1" >&2; exit 75;; esac; shift 2; ')
# $1 lock dir: "none" when there is no lock, else "owner <owner.json>" and "alive <pid>" for each session it
# records that is alive (same pid, start time and boot)
PROBE = LIB + script("lock_probe.sh")


class LockLost(StepError):
    """A guarded command found the host's lock gone or another run's: this run must leave that host alone."""


def guarded(argv: list[str], lock: str, token: str) -> list[str]:
    """argv run only while `lock` still names this run (token); else it exits LOST and runs nothing. A
    `sh -c SCRIPT` gets the check in front of its script (no extra process)."""
    if argv[:2] == ["sh", "-c"] and len(argv) >= 4:
        return ["sh", "-c", HOLDS + argv[2], argv[3], lock, token, *argv[4:]]
    return ["sh", "-c", HOLDS + 'exec "$@"', "sh", lock, token, *argv]


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat): a reused pid has another."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive_here(info: dict | None) -> bool | None:
    """Is the lock's holder a live process of this machine? None when it ran elsewhere (or says nothing)."""
    if not info or info.get("machine") != socket.gethostname():
        return None
    try:
        pid = int(info["pid"])
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                       # alive, another user's
    except (OSError, ValueError, KeyError, TypeError):
        return None
    start = info.get("pid_start")
    return not (isinstance(start, int) and process_start(pid) not in (None, start))


def probe_lock(t: Transport, layout: Layout) -> tuple[bool, dict | None, list[int]]:
    """(locked, its holder's info, pids of the holder's sessions alive on this host)."""
    out = t.run(["sh", "-c", PROBE, "sh", layout.lock])
    return parse_probe(out)


def parse_probe(text: str) -> tuple[bool, dict | None, list[int]]:
    lines = text.splitlines()
    if not lines or lines[0] == "none":
        return False, None, []
    holder, alive = None, []
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "owner":
            try:
                holder = json.loads(value) if value.strip() else None
            except ValueError:
                holder = None
            holder = holder if isinstance(holder, dict) else None
        elif key == "alive" and value.strip().isdigit():
            alive.append(int(value))
    return True, holder, alive


def holder_text(info: dict | None) -> str:
    if not info:
        return "an unknown run (the lock has no owner file)"
    still = f", dead, but its run {info['still']}" if info.get("still") else ""
    return (f"{info.get('user', '?')}@{info.get('machine', '?')} (pid {info.get('pid', '?')}, "
            f"{info.get('what', '?')}, since {info.get('time', '?')}{still})")


def read_holder(t: Transport, layout: Layout) -> dict | None:
    text = read_text(t, posixpath.join(layout.lock, "owner.json"))
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _stale(info: dict | None) -> bool:
    return alive_here(info) is False


def _archives_dir(layout: Layout) -> str:
    """The archives' directory by its name in the lock's directory (TAKE's $6), or "" when it is not there."""
    archives = posixpath.dirname(layout.artifact("x"))
    return posixpath.basename(archives) if posixpath.dirname(archives) == posixpath.dirname(layout.lock) else ""


def take_lock(t: Transport, layout: Layout, info: dict, say=print, reads=()) -> dict | str | None:
    """Take the host's lock for this run, recording this transport's session in it. Returns None when
    taken; a note when taken after breaking a dead run's stale lock (what became of that run's work
    here); else the holder's info (with "still": what its dead run still runs, when that kept the lock).
    reads: [(key, Cmd)] of read-only commands sent in the same exchange, after the take: when the lock was
    taken by it, they ran under it, and their answers are kept (Transport.keep; t.held is the caller's)."""
    note = None
    for _ in range(2):
        line = t.session_word()
        argv = ["sh", "-c", TAKE, "sh", layout.lock, line, posixpath.dirname(layout.lock),
                secrets.token_hex(6), json.dumps(info), _archives_dir(layout)]
        answers = t.batch([Cmd(argv), *(c for _, c in reads)])
        code, out, err = answers[0]
        if code != 0:
            raise CommandFailed(t.host, argv, code, err)
        out, reads = out.strip(), list(reads)
        if out == "taken":
            for (key, _), answer in zip(reads, answers[1:]):
                t.keep(key, answer)
            return note
        if out.startswith("unwritable\t"):
            raise StepError(unwritable_message(layout, out))
        holder = read_holder(t, layout)
        if holder and holder.get("token") == info["token"]:
            return note
        if not _stale(holder):
            return holder or {}
        ended = end_work(t, layout, say)
        if ended.running:
            return {**holder, "still": ended.text()}
        t.call(["sh", "-c", 'mv "$1" "$1.stale.$$" && rm -rf "$1.stale.$$"', "sh", layout.lock])
        note = (f"{t.host}: broke the stale lock of {holder_text(holder)}; "
                f"{ended.text() or 'nothing of its run ran here any more'}")
    return read_holder(t, layout) or {}


def record_session(t: Transport, layout: Layout, token: str, line: str) -> None:
    """Record one more watched process of this run (a second channel, a new connection) in its lock: its
    line (Watched.line), or "-" for the session shell's own (Transport.session_word)."""
    t.call(["sh", "-c", RECORD, "sh", layout.lock, token, line])


def end_work(t: Transport, layout: Layout, say=print, bound: int = WAIT_BOUND, sessions: str | None = None) -> Ended:
    """What the lock's run still runs on this host: waited for when it finishes alone (say() tells, as
    the wait starts), ended otherwise (watchdog.py's END). sessions: the lock's sessions file, when the lock
    was moved away first."""
    def on_line(stream, line):
        fields = line.split("\t")
        if stream == "out" and fields[0] == "waiting" and len(fields) == 4:
            say(f"{t.host}: {' '.join(fields[3].split())} (pid {fields[2]}) of the run that held the lock "
                f"finishes alone; waiting for it (at most {bound} s)")
    code, out, err = t.stream_lines(end_argv(sessions or layout.lock_sessions, bound), on_line)
    if code not in (0, 3):
        raise StepError(f"{t.host}: cannot end what the run of {layout.lock} still runs: "
                        f"{(err.strip().splitlines() or ['?'])[-1]}")
    return parse_end(out)


def unwritable_message(layout: Layout, line: str) -> str:
    """The TAKE script's "unwritable" line -> what the user must change."""
    _, me, owner, mode, where, *error = line.split("\t")
    detail = " ".join(error).strip()
    detail = f" ({detail.split(': ')[-1]})" if detail else ""
    return (f"cannot write {layout.deploy}: {where} is owned by {owner} (mode {mode}) and the login user {me} "
            f"cannot write there{detail}; make {layout.root} writable by {me} (e.g. sudo install -d -o {me} "
            f"{layout.root}) and run again")


def release_argv(layout: Layout, token: str) -> list[str]:
    return ["sh", "-c", RELEASE, "sh", layout.lock, token]


def release_lock(t: Transport, layout: Layout, token: str) -> None:
    t.call(release_argv(layout, token))


# $1 lock dir, $2 where to move it, $3 the token of the holder judged ("": any): moved away in one rename
# (its run, alive or not, holds it no more from then on), only while it still names that holder
BREAK = ('o=; { IFS= read -r o < "$1/owner.json"; } 2>/dev/null; if [ -n "$3" ]; then case $o in '
         '*\'"token": "\'"$3"\'"\'*) ;; *) exit 3;; esac; fi; mv -T -- "$1" "$2"')
# $1 the moved lock, $2 the lock: moved back when no other run took the lock meanwhile
UNBREAK = '[ -e "$2" ] || [ -L "$2" ] || mv -T -- "$1" "$2"'


def break_lock(t: Transport, layout: Layout, say=print, token: str | None = None) -> tuple[dict | None, Ended] | bool:
    """Remove the lock: first moved away (a run that still lives loses it at once, and a new connection of
    it finds no lock to record itself in), then what its run still runs here is ended (or finished alone),
    then it is gone. Returns the holder's info and that, or False when there was no lock (or it changed
    hands meanwhile). token: the holder the caller judged."""
    if not t.exists(layout.lock):
        return False
    holder = read_holder(t, layout)
    away = posixpath.join(posixpath.dirname(layout.lock), f".lock.broken.{secrets.token_hex(6)}")
    if t.call(["sh", "-c", BREAK, "sh", layout.lock, away, token or ""])[0] != 0:
        return False
    ended = end_work(t, layout, say, sessions=posixpath.join(away, "sessions"))
    if ended.running:
        t.call(["sh", "-c", UNBREAK, "sh", away, layout.lock])
        raise StepError(f"{t.host}: the run of {holder_text(holder)} {ended.text()}; the lock stays: wait "
                        f"for it to finish (or end it on the host), then unlock again")
    t.run(["rm", "-rf", "--", away])
    return holder, ended
