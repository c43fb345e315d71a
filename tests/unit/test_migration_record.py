"""steps/migration/migration_record.py on plain inputs: when an intent is open, the pair a release log names, which
backup a dead run left unrecorded for the next run to adopt."""
from __future__ import annotations

import json

from doit_stages.steps.migration.migration_record import adoptable, is_open, new_intent, pair, parse_record


def test_an_intent_is_open_until_it_has_an_outcome():
    rec = new_intent("staging", "blog-r1", "prod", "tok")
    assert is_open(rec) and rec["runs"] == ["tok"] and rec["before"] is None
    assert not is_open({**rec, "outcome": "migrated"}) and not is_open(None)
    assert parse_record(json.dumps(rec)) == rec
    assert parse_record("{torn") is None and parse_record('{"x": 1}') is None and parse_record(None) is None


def test_pair_names_the_recorded_before_and_after_of_that_release_only():
    rec = {**new_intent("staging", "blog-r1", "prod", "t"), "before": {"name": "b", "file": "b.sql.gz"},
           "after": {"name": "a", "file": "a.sql.gz"}, "outcome": "migrated"}
    assert pair(rec, "blog-r1") == ["b.sql.gz", "a.sql.gz"]
    assert pair(rec, "blog-r2") is None and pair(None, "blog-r1") is None
    assert pair({**rec, "outcome": None}, "blog-r1") == [] and pair({**rec, "outcome": "restored"}, "blog-r1") == []


def test_adoptable_is_the_newest_backup_of_that_reason_since_the_intent_began():
    metas = [{"name": "old", "reason": "before migrate:staging r1", "epoch": 5.0},
             {"name": "other", "reason": "before migrate:staging r2", "epoch": 11.0},
             {"name": "x", "reason": "before migrate:staging r1", "epoch": 12.0},
             {"name": "y", "reason": "before migrate:staging r1", "epoch": 13.0}]
    assert adoptable(metas, "before migrate:staging r1", 10.0)["name"] == "y"
    assert adoptable(metas, "before migrate:staging r1", 20.0) is None
    assert adoptable(metas, "after migrate:staging r1", 0.0) is None
