"""tasks/failpoints.py on plain inputs: parsing, and what an armed point does in this process (raise, stall,
per host, the trace); kill and pause, which need a process of their own: tests/integration/test_failpoints.py."""
from __future__ import annotations

import time

import pytest

from doit_stages import failpoints
from doit_stages.errors import StepError


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
