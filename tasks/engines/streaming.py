"""A long database command on a host (a dump, a restore), its progress shown while it runs.

The host-side filter (dumpfilter.py) writes `progress <done> <total> <rows>` lines on stderr. On a terminal
(the deployer's stderr is a tty) one line is redrawn in place once the command has run SHOW_AFTER seconds,
and cleared when it ends (the node's summary or error follows). Elsewhere nothing is shown: CI logs get the
node's one-line summary, as for every node.
"""
from __future__ import annotations

import re
import sys
import time
from typing import Sequence, TextIO

from ..progress import human_bytes
from ..transport import CommandFailed, Transport

SHOW_AFTER = 2.0
PROGRESS_RE = re.compile(r"progress (\d+) (\d+) (\d+)")


def parse_progress(line: str) -> tuple[int, int, int] | None:
    m = PROGRESS_RE.fullmatch(line.strip())
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def progress_text(label: str, done: int, total: int, rows: int, seconds: float) -> str:
    """`backup:prod  228.2 MB of SQL, 1,000,000 rows, 6 s` or `restore:test  45% of 59.5 MB, 6 s`."""
    if total:
        what = f"{100 * done // total}% of {human_bytes(total)}"
    else:
        what = f"{human_bytes(done)} of SQL" + (f", {rows:,} rows" if rows else "")
    return f"{label}  {what}, {seconds:.0f} s"


class Display:
    def __init__(self, label: str, stream: TextIO | None = None):
        self.label, self.stream = label, stream if stream is not None else sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.started, self.shown = time.monotonic(), False

    def update(self, done: int, total: int, rows: int) -> None:
        seconds = time.monotonic() - self.started
        if self.tty and seconds >= SHOW_AFTER:
            self.stream.write("\r" + progress_text(self.label, done, total, rows, seconds) + "\x1b[K")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run_streaming(t: Transport, argv: Sequence[str], label: str) -> str:
    """Run argv on t and return its stdout; progress lines on its stderr go to the display, the other
    lines make the error when it fails (CommandFailed, as Transport.run)."""
    display, errors = Display(label), []

    def on_line(which: str, line: str) -> None:
        if which != "err":
            return
        progress = parse_progress(line)
        if progress:
            display.update(*progress)
        elif line.strip():
            errors.append(line)
    try:
        code, out, err = t.stream_lines(argv, on_line)
    finally:
        display.close()
    if code != 0:
        raise CommandFailed(t.host, argv, code, "\n".join(errors) or err)
    return out
