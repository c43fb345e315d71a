"""tasks/failpoints.py on plain inputs: parsing, and what an armed point does (raise, stall, per host)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from doit_stages import failpoints
from doit_stages.steps.common import StepError


def test_parse_names_and_actions():
    assert failpoints.parse("switch.after_rename=kill; upload.mid_transfer=stall:2") == {
        "switch.after_rename": "kill", "upload.mid_transfer": "stall:2"}
    assert failpoints.parse("") == {}
    with pytest.raises(ValueError, match="unknown failpoint"):
        failpoints.parse("switch.after_renam=kill")
    with pytest.raises(ValueError, match="is not kill, raise, pause or stall"):
        failpoints.parse("switch.after_rename=explode")


def test_unarmed_does_nothing(monkeypatch):
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.hit("switch.after_rename")


def test_raise_is_a_step_error_and_can_be_limited_to_one_host(monkeypatch):
    monkeypatch.setenv(failpoints.ENV, "build.after_unpack=raise@ssh://deploy@web2:22")
    failpoints.hit("build.after_unpack", "ssh://deploy@web1:22")     # another host: nothing
    failpoints.hit("switch.after_rename", "ssh://deploy@web2:22")   # another point: nothing
    with pytest.raises(StepError, match="failpoint build.after_unpack armed to fail on ssh://deploy@web2:22"):
        failpoints.hit("build.after_unpack", "ssh://deploy@web2:22")


def test_stall_sleeps(monkeypatch):
    monkeypatch.setenv(failpoints.ENV, "switch.before_log=stall:0.3")
    start = time.monotonic()
    failpoints.hit("switch.before_log")
    assert time.monotonic() - start >= 0.3


def test_kill_kills_the_process_right_there():
    code = ("import os; os.environ['DEPLOY_FAILPOINTS'] = 'switch.after_rename=kill'\n"
            "from doit_stages import failpoints\nprint('before', flush=True)\nfailpoints.hit('switch.after_rename')\n"
            "print('after', flush=True)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == -9 and res.stdout == "before\n"


def test_pause_stops_the_process_until_it_is_continued():
    code = ("import os; os.environ['DEPLOY_FAILPOINTS'] = 'build.after_unpack=pause'\n"
            "from doit_stages import failpoints\nprint('before', flush=True)\nfailpoints.hit('build.after_unpack')\n"
            "print('after', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "before\n"
        deadline = time.monotonic() + 30
        while _state(proc.pid) != "T":
            assert time.monotonic() < deadline, "the process never stopped"
            time.sleep(0.01)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.stdout.read() == "after\n" and proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_trace_names_every_point_passed_armed_or_not(monkeypatch, tmp_path):
    trace = tmp_path / "trace"
    monkeypatch.delenv(failpoints.ENV, raising=False)
    monkeypatch.setenv(failpoints.TRACE_ENV, str(trace))
    failpoints.hit("switch.after_intent")
    failpoints.hit("switch.after_rename", "ssh://deploy@web2:22")
    monkeypatch.setenv(failpoints.ENV, "switch.before_log=stall:0")
    failpoints.hit("switch.before_log")
    assert trace.read_text() == ("switch.after_intent\t-\nswitch.after_rename\tssh://deploy@web2:22\n"
                                 "switch.before_log\t-\n")
