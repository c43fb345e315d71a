"""A streamed step's progress line (engines/streaming.py): parsed from the host's output, drawn on a terminal
only."""
from __future__ import annotations

import io

from doit_stages.engines.streaming import parse_progress, progress_text


# -- progress ------------------------------------------------------------------------------------------
def test_progress_lines():
    assert parse_progress("progress 1000 0 5") == (1000, 0, 5)
    assert parse_progress("mysqldump: Got error") is None
    assert progress_text("backup:prod", 228_175_925, 0, 1_000_000, 6.2) == \
        "backup:prod  228.2 MB of SQL, 1,000,000 rows, 6 s"
    assert progress_text("restore:test", 29_000_000, 59_465_634, 0, 3) == "restore:test  48% of 59.5 MB, 3 s"


def test_display_draws_only_on_a_terminal_and_clears_its_line(monkeypatch):
    from doit_stages.engines import streaming
    monkeypatch.setattr(streaming, "SHOW_AFTER", 0.0)
    tty, log = FakeTty(), io.StringIO()
    for stream in (tty, log):
        d = streaming.Display("backup:prod", stream)
        d.update(5_000_000, 0, 100)
        d.close()
    assert tty.getvalue().startswith("\rbackup:prod  5.0 MB of SQL, 100 rows, 0 s")
    assert tty.getvalue().endswith("\r\x1b[K")
    assert log.getvalue() == ""


class FakeTty(io.StringIO):
    def isatty(self):
        return True
