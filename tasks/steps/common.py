"""What every step shares: the error users see, writing a file through stdin, and fanning out to hosts."""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
import threading
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..config import Host
from ..transport import CommandFailed, Connections, Transport

T = TypeVar("T")


class StepError(Exception):
    """A step could not do its work; the message is one line naming stage, host and step."""


def write_file(t: Transport, path: str, data: bytes, mode: str = "600") -> None:
    """Write through stdin (never argv), to a temp name first, then rename: readers see all or nothing."""
    t.run(["sh", "-c", 'umask 077; mkdir -p "$(dirname "$1")" && cat > "$1.tmp" && chmod "$2" "$1.tmp" '
                       '&& mv -f "$1.tmp" "$1"', "sh", path, mode], input=data)


def read_text(t: Transport, path: str) -> str | None:
    code, out, _ = t.call(["cat", "--", path])
    return out if code == 0 else None


def append_line(t: Transport, path: str, record: dict) -> None:
    # One short write(2) with O_APPEND: concurrent appenders never interleave inside a line.
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    t.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat >> "$1"', "sh", path], input=line)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def on_hosts(pool: Connections, parallel: int, hosts: Sequence[Host], fn: Callable[[Transport], T],
             what: str, progress=None) -> list[T]:
    """Run fn(transport) on every host at once (up to [project] parallel), one connection per host.

    Returns the results in host order. If any host fails, raises one StepError naming every failed host,
    after all have finished, so the caller can undo on the ones that succeeded. progress: a
    tasks.progress.Progress told of every host that finishes."""
    results = run_on_hosts(pool, parallel, hosts, fn, progress)
    errors = [str(r) if isinstance(r, CommandFailed) or str(r).startswith(f"{h}: ") else f"{h}: {r}"
              for h, r in zip(hosts, results) if isinstance(r, Exception)]
    if errors:
        raise StepError(f"{what}: failed on {len(errors)} of {len(hosts)} host(s): " + "; ".join(errors))
    return results


def run_on_hosts(pool: Connections, parallel: int, hosts: Sequence[Host], fn: Callable[[Transport], T],
                 progress=None) -> list:
    """Like on_hosts, but a failure is returned in place of that host's result."""
    def one(host):
        try:
            result = fn(pool.get(host))
        except (CommandFailed, StepError) as exc:
            if isinstance(exc, CommandFailed) and exc.unreachable:
                pool.drop(host)
            result = exc
        if progress is not None:
            progress.host_done(ok=not isinstance(result, Exception))
        return result

    if len(hosts) == 1:
        return [one(hosts[0])]
    # plain threads, not an executor: this also runs from atexit (releasing locks), where
    # concurrent.futures refuses new work
    results: list = [None] * len(hosts)
    slots = threading.Semaphore(parallel)

    def worker(i):
        with slots:
            results[i] = one(hosts[i])
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(hosts))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def pack_wheelhouse(requirements: Path, wheel_dir: Path, target: Path) -> None:
    """requirements.txt (what the hosts' venv installs) and the wheels, tarred, then renamed into place."""
    tmp = target.with_name(target.name + ".partial")
    with tarfile.open(tmp, "w:") as tar:
        tar.add(requirements, arcname="requirements.txt")
        for whl in sorted(wheel_dir.iterdir()):
            tar.add(whl, arcname=whl.name)
    os.replace(tmp, target)
