"""watchdog.py's parsers on plain text: a session's identity line and END's report (the sh programs against
real processes: tests/integration/test_watchdog.py)."""
from __future__ import annotations

from doit_stages import watchdog


def test_parsers_on_plain_text():
    w = watchdog.parse_ident("noise\ndst-watch 12 345 ec3fca27-e2ac-467d-aae5-80d1d3421557\n")
    assert w == watchdog.Watched(12, 345, "ec3fca27-e2ac-467d-aae5-80d1d3421557")
    assert w.line() == "12 345 ec3fca27-e2ac-467d-aae5-80d1d3421557"
    assert watchdog.parse_ident("dst-watch 12 345 not-a-boot-id") is None
    out = watchdog.parse_end("waiting\t7\t8\tpython manage.py migrate\nwaited\t7\t4\nended\t9\tpip install x\n"
                             "running\tx\t1\n")
    assert out.waited == [(7, "python manage.py migrate", 4)] and out.ended == [(9, "pip install x")]
    assert out.text() == ("waited 4 s for python manage.py migrate (pid 7) to finish; "
                          "ended pip install x (pid 9)")


def test_the_lock_scripts_run_in_the_session_shell():
    """The take and a session's record read "-" as the session shell's own ident ($__dst_me, a variable of
    that shell, exported only where it is an `exec sh`): they must run in it, which a script using $$ would not (command_text gives it
    an sh of its own)."""
    from doit_stages.remote_shell import command_text
    from doit_stages.runtime.lock import RECORD, TAKE
    for script in (TAKE, RECORD):
        assert "__dst_me" in script
        assert command_text(["sh", "-c", script, "sh", "x"]).startswith(b"set -- 'x'; eval ")
