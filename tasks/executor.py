"""A function run on many hosts at once, over one connection per host for the whole run.

`Connections` keeps the run's transports (one SSH connection per host, reused by every node); `Executor`
runs a function on many hosts with a bounded pool, drops a connection that lost its host, and gives the
results in host order: `each` raises one StepError naming every failed host, after all have finished (so
the caller can undo on the ones that succeeded); `outcomes` returns a failure in place of that host's result.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from .config import Host
from .errors import StepError
from .transport import CommandFailed, Transport, connect

T = TypeVar("T")


def fan_out(fn: Callable[[int], None], count: int, parallel: int) -> None:
    """fn(0..count-1), at most `parallel` at once. Plain threads, not an executor: this also runs from
    atexit (releasing locks, closing connections), where concurrent.futures refuses new work."""
    if count == 1:
        fn(0)
        return
    slots = threading.Semaphore(max(1, parallel))

    def worker(i):
        with slots:
            fn(i)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


class Connections:
    """One transport per host for a whole run (one SSH connection per host). Each host is used by one
    thread at a time: fan-out gives every host its own thread."""

    def __init__(self, ssh_config: Path | None = None,
                 on_connect: Callable[[Host, Transport], None] | None = None, fast_kex: bool = False,
                 logins: int | None = None):
        self.ssh_config, self.fast_kex = ssh_config, fast_kex
        # logins: at most that many SSH logins under way at once, whoever asks (None: no bound): through a
        # bastion (ProxyJump), which drops new connections beyond its MaxStartups (10 unauthenticated)
        self._logins = threading.Semaphore(max(1, logins)) if logins else contextlib.nullcontext()
        self._bounded = bool(logins)
        self.on_connect = on_connect   # told of every connection made (the run's locks record it)
        self._open: dict[Host, Transport] = {}
        self._mutex = threading.Lock()
        self._early: dict[Host, threading.Event] = {}     # connections under way in the background (early)
        self._failed: dict[Host, Exception] = {}          # ... and how one of them failed, told once by get

    def early(self, hosts: Sequence[Host]) -> None:
        """Connect to these hosts in the background, now: the SSH login (9 round trips, OpenSSH's own) then
        overlaps what this machine does before it first needs a host (doit's start, its graph, the archive).
        A login changes nothing on a host. get() waits for a host's early connection instead of making a
        second one; one that failed is get()'s failure, once (a later get() connects again, as always).
        A connection is made once ssh started and the session's hello is written: its login goes on behind
        it, and a login that fails is its first command's failure ("cannot reach the host", with what ssh
        said), which drops the connection (one()); but for bounded logins, which wait for it here."""
        todo = []
        with self._mutex:
            for h in dict.fromkeys(hosts):
                if not h.local and h not in self._open and h not in self._early:
                    self._early[h] = threading.Event()
                    todo.append(h)
        for h in todo:
            threading.Thread(target=self._connect_early, args=(h,), daemon=True).start()

    def _connect(self, host: Host) -> Transport:
        with self._logins:
            t = connect(host, self.ssh_config, self.fast_kex)
            if self._bounded:   # a connection's first command does not wait for its login: this bound does
                try:
                    t.wait_login()
                except CommandFailed:
                    t.close()
                    raise
            return t

    def _connect_early(self, host: Host) -> None:
        try:
            self._keep(host, self._connect(host))
        except Exception as exc:   # told by get(), where the run first needs the host
            with self._mutex:
                self._failed[host] = exc
        finally:
            with self._mutex:
                done = self._early.pop(host)
            done.set()

    def _keep(self, host: Host, new: Transport) -> Transport:
        with self._mutex:
            t = self._open.setdefault(host, new)
        if t is not new:  # another thread connected first
            new.close()
        elif self.on_connect is not None:
            self.on_connect(host, new)
        return t

    def get(self, host: Host) -> Transport:
        with self._mutex:
            t = self._open.get(host)
            early = self._early.get(host) if t is None else None
        if early is not None:
            early.wait()
            with self._mutex:
                t = self._open.get(host)
                failed = self._failed.pop(host, None)
            if t is None and failed is not None:
                raise failed
        if t is None:
            t = self._keep(host, self._connect(host))
        return t

    def open_transports(self) -> list[Transport]:
        with self._mutex:
            return list(self._open.values())

    def drop(self, host: Host) -> None:
        """Forget a host's transport after it failed to reach the host: the next use reconnects."""
        with self._mutex:
            t = self._open.pop(host, None)
        if t is not None:
            t.close()

    def close_all(self, wait: bool = True) -> None:
        """Every connection ended, each waiting for its remote shell; wait=False (the process's end): each
        told to end, none waited for (Transport.let_go)."""
        with self._mutex:
            open_, self._open = list(self._open.values()), {}
        fan_out(lambda i: open_[i].close() if wait else open_[i].let_go(), len(open_), len(open_))


class Executor:
    def __init__(self, connections: Connections, parallel: int):
        self.connections, self.parallel = connections, parallel

    def one(self, host: Host, fn: Callable[[Transport], T]) -> T:
        """fn on one host; a failure propagates (a lost connection is dropped first)."""
        try:
            return fn(self.connections.get(host))
        except CommandFailed as exc:
            if exc.unreachable:
                self.connections.drop(host)
            raise

    def outcomes(self, hosts: Sequence[Host], fn: Callable[[Transport], T], progress=None,
                 wide: bool = False) -> list:
        """fn on every host at once (at most `parallel` at a time; wide: all of them, for fn that is a few
        small exchanges: a read, a lock, an intent, a rename, a record, where waves of `parallel` would only
        multiply the round trips); each host's result, or the exception it raised. progress: a
        progress.Progress told of every host that finishes. Any exception fails its host: one that is not a
        StepError/CommandFailed is a bug, whose traceback is printed, and never a host's silent success
        (a worker thread that died would leave the host's result None, read as done)."""
        results: list = [None] * len(hosts)

        def one(i):
            try:
                result = self.one(hosts[i], fn)
            except (CommandFailed, StepError) as exc:
                result = exc
            except Exception as exc:
                print(f"doit-stages: a bug on {hosts[i]} (it counts as that host failing):", file=sys.stderr)
                traceback.print_exception(exc, file=sys.stderr)
                result = StepError(f"{hosts[i]}: internal error {type(exc).__name__}: {exc}")
            if progress is not None:
                progress.host_done(ok=not isinstance(result, Exception))
            results[i] = result
        fan_out(one, len(hosts), len(hosts) if wide else self.parallel)
        return results

    def each(self, hosts: Sequence[Host], fn: Callable[[Transport], T], what: str, progress=None,
             wide: bool = False) -> list[T]:
        """fn on every host at once; the results in host order, or one StepError naming every failed host."""
        results = self.outcomes(hosts, fn, progress, wide)
        errors = [str(r) if isinstance(r, CommandFailed) or str(r).startswith(f"{h}: ") else f"{h}: {r}"
                  for h, r in zip(hosts, results) if isinstance(r, Exception)]
        if errors:
            raise StepError(f"{what}: failed on {len(errors)} of {len(hosts)} host(s): " + "; ".join(errors))
        return results
