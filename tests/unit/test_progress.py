"""tasks/progress.py: the live line on a terminal, plain lines elsewhere (a clock we move by hand)."""
from __future__ import annotations

import io
import os
import select
import time

from doit_stages.progress import PLAIN_EVERY, Progress, human_bytes


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_one_line_is_redrawn_then_cleared():
    out, clock = Tty(), Clock()
    with Progress("build:prod", 16, stream=out, clock=clock) as p:
        assert out.getvalue() == "\rbuild:prod  0/16 hosts\x1b[K"
        for i in range(12):
            clock.now += 0.2
            p.host_done()
        assert out.getvalue().endswith("\rbuild:prod  12/16 hosts\x1b[K")
        p.host_done()                       # within 0.1 s of the last frame: not redrawn
        assert out.getvalue().endswith("12/16 hosts\x1b[K")
        p.host_done(ok=False)
        p.host_done()
        p.host_done()                       # the last host is always shown
        assert out.getvalue().endswith("\rbuild:prod  16/16 hosts, 1 failed\x1b[K")
    assert out.getvalue().endswith("\r\x1b[K")


def test_uploads_show_bytes_to_the_store_then_hosts():
    out, clock = Tty(), Clock()
    p = Progress("upload:prod", 4, stream=out, clock=clock)
    p.set_phase("to s3://b/p", 3_000_000)
    clock.now += 1
    p.sent(1_500_000)
    assert out.getvalue().endswith("\rupload:prod  to s3://b/p 1.5 MB/3.0 MB\x1b[K")
    p.set_phase("")
    clock.now += 1
    p.host_done(nbytes=3_000_000)
    assert out.getvalue().endswith("\rupload:prod  1/4 hosts, 3.0 MB\x1b[K")
    p.close()


def test_not_a_terminal_a_fast_node_prints_nothing_a_slow_one_a_line_now_and_then():
    out, clock = io.StringIO(), Clock()
    with Progress("build:test", 3, stream=out, clock=clock) as p:
        p.host_done()
        p.host_done()
    assert out.getvalue() == ""
    out = io.StringIO()
    with Progress("build:test", 3, stream=out, clock=clock, plain_every=0.05) as p:
        p.host_done()
        clock.now += 10
        time.sleep(0.3)                     # no host finishes meanwhile: the heartbeat still writes
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and set(lines) == {"   build:test  1/3 hosts (10s)"}, lines
    assert PLAIN_EVERY == 10


def test_a_real_pty_counts_as_a_terminal():
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as stream:
        with Progress("switch:prod", 2, stream=stream) as p:
            p.host_done()
            p.host_done()
        shown = b""
        while select.select([master], [], [], 1)[0]:        # everything written, however it was split
            shown += os.read(master, 4096)
            if shown.endswith(b"\r\x1b[K") and b"2/2" in shown:
                break
        shown = shown.decode()
    os.close(master)
    assert "switch:prod  2/2 hosts" in shown and shown.endswith("\r\x1b[K")


def test_human_bytes():
    assert [human_bytes(n) for n in (999, 1000, 1_234_567, 5e9)] == ["999 B", "1.0 KB", "1.2 MB", "5.0 GB"]


# -- Executor.each: every host counted, every failed host named once --------------------------------------
class Pool:
    """Connections for hosts that are this machine (the local transport), one per host spec."""

    def get(self, host):
        from doit_stages.transport import LocalTransport
        t = LocalTransport(host)
        return t

    def drop(self, host):
        pass


def test_on_hosts_names_every_failed_host_once_and_counts_them():
    import pytest

    from doit_stages.config import Host
    from doit_stages.errors import StepError
    from doit_stages.executor import Executor
    from doit_stages.transport import CommandFailed
    hosts = [Host(f"ssh://deploy@web{i}:22", f"web{i}", "deploy", 22) for i in range(1, 6)]

    def fn(t):
        if t.host.hostname in ("web2", "web5"):
            if t.host.hostname == "web2":
                raise StepError(f"{t.host}: upload: cannot download x")     # names its host itself
            # what t.run(["sh", "-c", "echo no space left >&2; exit 3"]) raises
            raise CommandFailed(t.host, ["sh", "-c", "echo no space left >&2; exit 3"], 3, "no space left\n")
        return t.host.hostname
    out = Tty()
    with Progress("upload:prod", len(hosts), stream=out, clock=Clock()) as p:
        with pytest.raises(StepError) as info:
            Executor(Pool(), 3).each(hosts, fn, "upload:prod", p)
    msg = str(info.value)
    assert msg == ("upload:prod: failed on 2 of 5 host(s): ssh://deploy@web2:22: upload: cannot download x; "
                   "ssh://deploy@web5:22: sh exited 3: no space left")
    assert "upload:prod  5/5 hosts, 2 failed" in out.getvalue()


def test_a_lasting_wait_is_named_with_its_host_step_and_command():
    from doit_stages.progress import WAIT_SHOWN, Waits
    out, clock = Tty(), Clock()
    waits = Waits(clock=clock)
    with Progress("switch:prod", 2, stream=out, clock=clock, waits=waits) as p:
        with waits.on("web1", "reload", "systemctl reload app"), waits.on("web2", "reload", "systemctl reload app"):
            assert p.text() == "switch:prod  0/2 hosts"          # a short wait is not worth a word
            clock.now += WAIT_SHOWN + 9
            with waits.on("web3", "health check", "http://web3/up"):
                assert p.text() == \
                    "switch:prod  0/2 hosts, waiting on web1, web2: reload (systemctl reload app) for 12s"
                assert waits.text() == ("web1, web2: reload (systemctl reload app) for 12s; "
                                        "web3: health check (http://web3/up) for 0s")
        assert waits.current() == [] and p.text() == "switch:prod  0/2 hosts"


def test_not_a_terminal_a_wait_is_named_as_soon_as_it_lasts():
    from doit_stages.progress import WAIT_SHOWN, Waits
    out, clock = io.StringIO(), Clock()
    waits = Waits(clock=clock)
    with Progress("switch:prod", 1, stream=out, clock=clock, waits=waits, plain_every=3600):
        with waits.on("web1", "reload", "sleep 1000"):
            clock.now += WAIT_SHOWN
            deadline = time.monotonic() + 5
            while "waiting on" not in out.getvalue() and time.monotonic() < deadline:
                time.sleep(0.05)                # the heartbeat ticks every second
    assert out.getvalue().splitlines() == \
        ["   switch:prod  0/1 hosts, waiting on web1: reload (sleep 1000) for 3s (3s)"]
