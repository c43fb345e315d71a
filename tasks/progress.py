"""What a user sees while a node works on many hosts: `build:prod  12/16 hosts`.

On a terminal (stderr is a tty) one line is redrawn in place (at most 10 times a second) and cleared when
the node ends, since the node's summary or its error follows. Elsewhere (CI logs) a plain line is written
every PLAIN_EVERY seconds while the node runs (a thread ticks), so a fast node adds nothing and a slow one
shows it lives.
Workers call host_done() and sent() from their threads.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

TTY_EVERY = 0.1
PLAIN_EVERY = 10.0


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, plain_every: float = PLAIN_EVERY):
        self.label, self.total = label, total
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
        if self.tty:
            self._draw()
        else:  # a heartbeat even while no host finishes (one slow build)
            threading.Thread(target=self._tick, args=(plain_every,), daemon=True).start()

    def _tick(self, every: float) -> None:
        while not self._closed.wait(every):
            with self._mutex:
                if not self._closed.is_set():
                    self._draw()

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
