"""steps/releaselog.py on plain records: the log read past a torn line, the rollback target, the last switch."""
from __future__ import annotations

from doit_stages.steps.releaselog import last_switch, parse_log, rollback_target
from tests.lab.releases import rec


def test_parse_log_skips_a_torn_last_line_and_junk():
    text = ('{"stage": "test", "release": "A", "result": "ok"}\n'
            "\n"
            "[1, 2]\n"
            '{"stage": "test", "release": "B", "result": "ok"}\n'
            '{"stage": "test", "release": "C", "res')
    assert [r["release"] for r in parse_log(text)] == ["A", "B"]
    assert parse_log("") == []


def test_rollback_target_is_the_previous_good_release():
    log = [rec("prod", "A", "ok"), rec("test", "X", "ok"), rec("prod", "B", "ok"), rec("prod", "C", "ok"),
           rec("test", "Y", "ok")]
    assert rollback_target(log, "prod", "C") == "B"
    assert rollback_target(log, "test", "Y") == "X"
    assert rollback_target(log, "prod", "A") == "C"     # the newest one that is not current
    assert rollback_target([rec("prod", "A", "ok")], "prod", "A") is None


def test_rollback_target_skips_bad_and_failed_releases():
    log = [rec("prod", "A", "ok"), rec("prod", "B", "ok"),
           rec("prod", "C", "ok"), rec("prod", "B", "rollback"), rec("prod", "C", "bad"),
           rec("prod", "D", "failed"), rec("prod", "E", "ok")]
    # E is current; C was rolled away from (bad), D's switch failed: B, which runs again since the rollback
    assert rollback_target(log, "prod", "E") == "B"
    # from B: C is bad, so back to A
    log2 = log[:5]
    assert rollback_target(log2, "prod", "B") == "A"


def test_a_bad_release_promoted_again_is_good_again():
    log = [rec("prod", "A", "ok"), rec("prod", "B", "ok"), rec("prod", "A", "rollback"), rec("prod", "B", "bad"),
           rec("prod", "B", "ok"), rec("prod", "C", "ok")]
    assert rollback_target(log, "prod", "C") == "B"


def test_last_switch():
    log = [rec("prod", "A", "ok", time="t1"), rec("test", "A", "ok", time="t2"), rec("prod", "B", "ok", time="t3"),
           rec("prod", "A", "rollback", time="t4"), rec("prod", "B", "bad", time="t5"),
           rec("prod", "C", "failed", time="t6")]
    assert last_switch(log, "prod", "A")["time"] == "t4"
    assert last_switch(log, "test", "A")["time"] == "t2"
    assert last_switch(log, "prod", "B")["time"] == "t3"       # not the 'bad' mark
    assert last_switch(log, "prod", "C") is None               # a failed switch put nothing live
    assert last_switch(log, "prod", None) is None
