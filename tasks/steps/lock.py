"""lock: .deploy/lock on a host, taken atomically with mkdir, holding who/when/what/pid as JSON.

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
from .common import read_text

# $1 lock dir; stdin: the owner's JSON, written inside right after the mkdir that takes the lock
TAKE = ('mkdir -p "${1%/*}" && mkdir "$1" 2>/dev/null || exit 0; echo taken; '
        'cat > "$1/owner.json.tmp" && chmod 644 "$1/owner.json.tmp" && mv -f "$1/owner.json.tmp" "$1/owner.json"')
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
        if t.run(["sh", "-c", TAKE, "sh", layout.lock], input=json.dumps(info).encode()).strip() == "taken":
            return None
        holder = read_holder(t, layout)
        if holder and holder.get("token") == info["token"]:
            return None
        if not _stale(holder):
            return holder or {}
        t.call(["sh", "-c", 'mv "$1" "$1.stale.$$" && rm -rf "$1.stale.$$"', "sh", layout.lock])
    return read_holder(t, layout) or {}


def release_lock(t: Transport, layout: Layout, token: str) -> None:
    t.call(["sh", "-c", RELEASE, "sh", layout.lock, token])


def break_lock(t: Transport, layout: Layout) -> dict | None | bool:
    """Remove the lock whoever holds it; returns the holder's info, or False when there was none."""
    if not t.exists(layout.lock):
        return False
    holder = read_holder(t, layout)
    t.run(["rm", "-rf", "--", layout.lock])
    return holder
