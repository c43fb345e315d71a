"""What a user sees while a node works on many hosts: `build:prod  12/16 hosts`.

On a terminal (stderr is a tty) one line is redrawn in place (at most 10 times a second) and cleared when
the node ends, since the node's summary or its error follows. Elsewhere (CI logs) a plain line is written
every PLAIN_EVERY seconds while the node runs (a thread ticks), so a fast node adds nothing and a slow one
shows it lives. A wait that lasts more than WAIT_SHOWN seconds (a reload, a health check) is named on
that line: `switch:prod  1/2 hosts, waiting on web2: reload (systemctl reload gunicorn) for 12s`.
Workers call host_done() and sent() from their threads.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TextIO

TTY_EVERY = 0.1
PLAIN_EVERY = 10.0
WAIT_SHOWN = 3.0   # seconds a wait lasts before the progress line names it


@dataclass(eq=False)
class Wait:
    """One host's wait on one step (its command): `stop` (if any) cuts it short as its own timeout would."""
    host: object
    step: str
    command: str
    since: float
    stop: Callable[[], None] | None = None


class Waits:
    """What a run waits on now, host by host: named by the progress line once it lasts, and by the first
    Ctrl-C of a switch; a second Ctrl-C stops what can be stopped (session.deferred_signals)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._now: list[Wait] = []
        self._mutex = threading.RLock()   # a signal handler reads it in the thread that may hold it

    @contextlib.contextmanager
    def on(self, host, step: str, command: str, stop: Callable[[], None] | None = None) -> Iterator[Wait]:
        wait = Wait(host, step, command, self.clock(), stop)
        with self._mutex:
            self._now.append(wait)
        try:
            yield wait
        finally:
            with self._mutex:
                self._now.remove(wait)

    def current(self, older_than: float = 0.0) -> list[Wait]:
        """The waits under way, those older than older_than seconds."""
        now = self.clock()
        with self._mutex:
            return [w for w in self._now if now - w.since >= older_than]

    def text(self, waits: list[Wait] | None = None) -> str:
        """`web1, web2: reload (systemctl reload gunicorn) for 12s`: the waits (default: all), the hosts of
        one step and command together; "" when there is none."""
        now, groups = self.clock(), {}
        for w in self.current() if waits is None else waits:
            groups.setdefault((w.step, w.command), []).append(w)
        return "; ".join(f"{', '.join(str(w.host) for w in ws)}: {step}" + (f" ({command})" if command else "")
                         + f" for {now - min(w.since for w in ws):.0f}s" for (step, command), ws in groups.items())


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, plain_every: float = PLAIN_EVERY,
                 waits: Waits | None = None):
        self.label, self.total = label, total
        self.waits = waits   # named on the line once one lasts WAIT_SHOWN seconds
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream)
        self.clock = clock
        self.done = self.failed = 0
        self.bytes = 0
        self.phase = ""            # e.g. "store" while the artifact goes up to the S3 store
        self.phase_total = 0
        self._mutex = threading.Lock()
        self._started = self._last = clock()
        self._shown = False
        self._closed = threading.Event()
        self._named: list[Wait] = []   # the waits the line named last
        if self.tty:
            self._draw()
        if not self.tty or waits is not None:  # a heartbeat even while no host finishes (one slow build)
            threading.Thread(target=self._tick, args=(plain_every,), daemon=True).start()

    def _tick(self, every: float) -> None:
        """Plain: a line every `every` seconds, and one as soon as a wait is named; on a terminal the line
        is redrawn every second while it names a wait (its seconds go on)."""
        step = min(every, 1.0) if self.waits is not None else every
        waited = 0.0
        while not self._closed.wait(step):
            waited += step
            with self._mutex:
                if self._closed.is_set():
                    return
                named = self.waits.current(WAIT_SHOWN) if self.waits is not None else []
                new = any(w not in self._named for w in named)
                if (named if self.tty else waited >= every or new):
                    waited = 0.0
                    self._draw()
                self._named = named

    def _waits_text(self) -> str:
        return self.waits.text(self.waits.current(WAIT_SHOWN)) if self.waits is not None else ""

    # -- what the workers report -------------------------------------------------------------------
    def host_done(self, ok: bool = True, nbytes: int = 0) -> None:
        with self._mutex:
            self.done += 1
            self.failed += 0 if ok else 1
            self.bytes += nbytes
            self._maybe_draw()

    def sent(self, nbytes: int) -> None:
        with self._mutex:
            self.bytes += nbytes
            self._maybe_draw()

    def set_phase(self, phase: str, total_bytes: int = 0) -> None:
        with self._mutex:
            self.phase, self.phase_total, self.bytes = phase, total_bytes, 0
            self._maybe_draw(force=self.tty)

    # -- what is shown -----------------------------------------------------------------------------
    def text(self) -> str:
        if self.phase:
            size = f"{human_bytes(self.bytes)}/{human_bytes(self.phase_total)}" if self.phase_total \
                else human_bytes(self.bytes)
            return f"{self.label}  {self.phase} {size}"
        parts = [f"{self.label}  {self.done}/{self.total} hosts"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.bytes:
            parts.append(human_bytes(self.bytes))
        named = self._waits_text()
        if named:
            parts.append(f"waiting on {named}")
        return ", ".join(parts)

    def _maybe_draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = self.clock()
        if force or now - self._last >= TTY_EVERY or (self.done == self.total and not self.phase):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.text() + "\x1b[K")
        else:
            self.stream.write(f"   {self.text()} ({self.clock() - self._started:.0f}s)\n")
        self._shown = True
        self.stream.flush()

    def close(self) -> None:
        self._closed.set()
        with self._mutex:
            if self.tty and self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
