"""lock: .deploy/lock on a host, holding who/when/what/pid/token as JSON, taken atomically.

The lock directory is made under a temporary name with its owner file already inside, then renamed into
place: a lock never exists without its owner (a full disk fails the take, it does not leave an anonymous
lock that refuses every later run), and of two runs racing for it exactly one rename wins.

A second run is refused with the holder's name. A lock whose holder ran on this same machine and whose
process is gone is stale (the deployer was killed): it is broken by renaming it away, which only one
run can do, since runs of one project on one machine are serialised by the project's local lock.
"""
from __future__ import annotations

import json
import os
import posixpath
import socket

from ..layout import Layout
from ..transport import Transport
from .common import StepError, read_text

# $1 the lock dir; the owner JSON on stdin. Prints "taken", "held", or "unwritable", me, owner, mode, dir, error
# (tab-separated; dir: the nearest existing directory on the way, so the user learns who owns what it could
# not write).
TAKE = r'''lock=$1; d=$(dirname "$lock")
unwritable() {
  p=$d; while [ ! -e "$p" ]; do p=$(dirname "$p"); done
  printf 'unwritable\t%s\t%s\t%s\t%s\t%s\n' "$(id -un)" "$(stat -c %U -- "$p")" "$(stat -c %a -- "$p")" "$p" "$1"
  exit 0
}
[ -e "$lock" ] && { echo held; exit 0; }   # a refused run writes nothing on the host
err=$(mkdir -p -- "$d" 2>&1)
find "$d" -maxdepth 1 -name '.lock.*' -mmin +60 -exec rm -rf {} + 2>/dev/null
tmp=$(mktemp -d "$d/.lock.XXXXXX" 2>&1) || unwritable "${err:-$tmp}"
{ cat > "$tmp/owner.json" && chmod 755 "$tmp" && chmod 644 "$tmp/owner.json"; } 2>/dev/null || {
  rm -rf "$tmp"; unwritable "cannot write the owner file: disk full?"; }
if mv -T -- "$tmp" "$lock" 2>/dev/null; then echo taken; else rm -rf "$tmp"; echo held; fi'''

# $1 lock dir, $2 this run's token: removed only when this run holds it
RELEASE = 'case "$(cat "$1/owner.json" 2>/dev/null)" in *\'"token": "\'"$2"\'"\'*) rm -rf -- "$1";; esac'


def holder_text(info: dict | None) -> str:
    if not info:
        return "an unknown run (the lock has no owner file)"
    return (f"{info.get('user', '?')}@{info.get('machine', '?')} (pid {info.get('pid', '?')}, "
            f"{info.get('what', '?')}, since {info.get('time', '?')})")


def read_holder(t: Transport, layout: Layout) -> dict | None:
    text = read_text(t, posixpath.join(layout.lock, "owner.json"))
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _stale(info: dict | None) -> bool:
    if not info or info.get("machine") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError):
        return False
    return False


def take_lock(t: Transport, layout: Layout, info: dict) -> dict | None:
    """Take the host's lock for this run; returns None when taken, else the holder's info."""
    for _ in range(2):
        out = t.run(["sh", "-c", TAKE, "sh", layout.lock], input=json.dumps(info).encode()).strip()
        if out == "taken":
            return None
        if out.startswith("unwritable\t"):
            raise StepError(unwritable_message(layout, out))
        holder = read_holder(t, layout)
        if holder and holder.get("token") == info["token"]:
            return None
        if not _stale(holder):
            return holder or {}
        t.call(["sh", "-c", 'mv "$1" "$1.stale.$$" && rm -rf "$1.stale.$$"', "sh", layout.lock])
    return read_holder(t, layout) or {}


def unwritable_message(layout: Layout, line: str) -> str:
    """The TAKE script's "unwritable" line -> what the user must change."""
    _, me, owner, mode, where, *error = line.split("\t")
    detail = " ".join(error).strip()
    detail = f" ({detail.split(': ')[-1]})" if detail else ""
    return (f"cannot write {layout.deploy}: {where} is owned by {owner} (mode {mode}) and the login user {me} "
            f"cannot write there{detail}; make {layout.root} writable by {me} (e.g. sudo install -d -o {me} "
            f"{layout.root}) and run again")


def release_lock(t: Transport, layout: Layout, token: str) -> None:
    t.call(["sh", "-c", RELEASE, "sh", layout.lock, token])


def break_lock(t: Transport, layout: Layout) -> dict | None | bool:
    """Remove the lock whoever holds it; returns the holder's info, or False when there was none."""
    if not t.exists(layout.lock):
        return False
    holder = read_holder(t, layout)
    t.run(["rm", "-rf", "--", layout.lock])
    return holder
