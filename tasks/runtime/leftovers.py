"""Leftovers of dead runs on a host: the things a database step makes for the length of one command and
removes after it, which a killed deployer leaves behind for good.

- `.deploy/cnf.<owner>.<random>/my.cnf` (or `pgpass`): a MySQL option file or a libpq password file with the
  database password (0600);
- `.deploy/incoming/<owner>.<file>`: a production dump copied from another backup host for a restore;
- `db_backup/.<owner>.<name>.partial`: a dump being written.

`<owner>` is `<machine>.<pid>` of the deployer that made it. The rule (run by every backup and restore,
before it makes its own): a leftover is removed only when its run is provably not running any more —
- made on this machine by a pid that no longer exists (a live pid, even a reused one, keeps it), or
- made on another machine, or named by an older version (no owner), while THIS run holds the host's lock:
  every backup and restore works under the host's lock, so no live run can be using it.
A leftover of a live run is never touched, and this run never removes its own.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import secrets
import socket

from ..layout import Layout
from ..transport import Cmd, CommandFailed, Transport
from .common import write_cmd

OWNER_RE = re.compile(r"(?P<machine>[A-Za-z0-9-]{1,40})\.(?P<pid>\d+)\.")
LIST = ('cat "$1/lock/owner.json" 2>/dev/null; echo; echo --; '
        'for f in "$1"/cnf.* "$1"/incoming/* "$2"/.*.partial; do [ -e "$f" ] && printf "%s\\n" "$f"; done; true')


def machine() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "unknown"


def owner_tag() -> str:
    """`<machine>.<pid>`: what this run puts in the names of its temporary files on a host."""
    return f"{machine()}.{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True       # exists, owned by someone else
    return True


def owner_of(path: str) -> tuple[str, int] | None:
    """(machine, pid) from a leftover's name, or None for a name without one."""
    name = posixpath.basename(path)
    for prefix in ("cnf.", "."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    m = OWNER_RE.match(name)
    return (m.group("machine"), int(m.group("pid"))) if m else None


def dead_leftovers(paths: list[str], lock_holder: dict | None, me: tuple[str, int], host_name: str,
                   alive=pid_alive) -> list[str]:
    """Pure: which of paths belong to runs that are provably dead (the rule in the module's docstring).
    me = (machine tag, pid) of this run; host_name = socket.gethostname() as the lock's owner file says."""
    we_hold_lock = bool(lock_holder) and lock_holder.get("machine") == host_name and \
        str(lock_holder.get("pid")) == str(me[1])
    doomed = []
    for path in paths:
        owner = owner_of(path)
        if owner == me:
            continue
        if owner and owner[0] == me[0]:
            if not alive(owner[1]):
                doomed.append(path)
        elif we_hold_lock:
            doomed.append(path)
    return doomed


def parse_listing(text: str) -> tuple[dict | None, list[str]]:
    head, _, rest = text.partition("\n--\n")
    try:
        holder = json.loads(head) if head.strip() else None
    except ValueError:
        holder = None
    return (holder if isinstance(holder, dict) else None), [ln for ln in rest.splitlines() if ln.strip()]


def sweep_leftovers(t: Transport, layout: Layout) -> list[str]:
    """Remove the leftovers of dead runs on this host; returns what was removed. Its read is answered by
    an exchange that carried it just before (a kept answer: an engine's option file's), else asked now."""
    argv = list_leftovers(layout).argv
    code, out, err = t.call_kept(argv)
    if code != 0:
        raise CommandFailed(t.host, argv, code, err)
    return sweep_listed(t, out)


def list_leftovers(layout: Layout) -> Cmd:
    """The read sweep_leftovers starts with, for a batch that carries it (then sweep_listed(t, its output))."""
    return Cmd(["sh", "-c", LIST, "sh", layout.deploy, layout.backups])


def sweep_listed(t: Transport, listing: str) -> list[str]:
    """sweep_leftovers, from list_leftovers' output read just now: the dead runs' leftovers removed (one
    more exchange, only when there are some)."""
    holder, paths = parse_listing(listing)
    doomed = dead_leftovers(paths, holder, (machine(), os.getpid()), socket.gethostname())
    if doomed:
        t.call(["rm", "-rf", "--", *doomed])     # best effort: what cannot go never stops this run
    return doomed


# $1 the .deploy dir (made 0700 when missing, as `mkdir -p -m 700`), $2 a new dir in it (0700; fails if it is there)
PRIVATE_DIR = 'mkdir -p -m 700 "$1" && mkdir -m 700 "$2"'


def private_file(layout: Layout, filename: str, data: bytes) -> tuple[str, list[Cmd]]:
    """A secret file (0600) in a new 0700 dir of .deploy/ named by this run (`cnf.<owner>.<random>`: a killed
    run's is found and removed by the next run's sweep), as a batch's commands: (the file's path, the
    commands: the dir made, then the file written through stdin, only once the dir is there)."""
    tmp = posixpath.join(layout.deploy, f"cnf.{owner_tag()}.{secrets.token_hex(6)}")
    path = posixpath.join(tmp, filename)
    return path, [Cmd(["sh", "-c", PRIVATE_DIR, "sh", layout.deploy, tmp]), write_cmd(path, data, if_ok=True)]
