"""tasks/failpoints.py on plain inputs: parsing, and what an armed point does (raise, stall, per host)."""
from __future__ import annotations

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
    with pytest.raises(ValueError, match="is not kill, raise or stall"):
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
