"""Facts: each state script of a step and its pure parser (pyinfra's facts). Here each parser on canned
output (tests/facts/<fact>/<case>.json: args, output, fact), as pyinfra's tests/facts/<Fact>/*.json; each
script run for real is in tests/integration/test_facts.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from doit_stages.runtime import leftovers
from doit_stages.steps import build, cleanup, switch
from doit_stages.steps.database.backup import parse_backup_list
from doit_stages.steps.facts import parse_facts

FACTS = Path(__file__).parents[1] / "facts"


def _scan(text):
    linked, names, log = cleanup.parse_scan(text)
    return [sorted(linked), names, log]


PARSERS = {
    "switch_state": switch.parse_state,
    "stage_state": build.parse_stage_state,
    "scan": _scan,
    "leftovers": lambda text: list(leftovers.parse_listing(text)),
    "backup_list": lambda text, database: list(parse_backup_list(text, database)),
    "verify_facts": parse_facts,
}
CASES = sorted((d.name, f) for d in FACTS.iterdir() for f in d.glob("*.json"))


def test_every_fact_has_cases_and_every_case_a_parser():
    assert {name for name, _ in CASES} == set(PARSERS)


@pytest.mark.parametrize("fact, path", CASES, ids=[f"{n}/{p.stem}" for n, p in CASES])
def test_parser_on_canned_output(fact, path):
    case = json.loads(path.read_text())
    assert PARSERS[fact](case["output"], *case.get("args", [])) == case["fact"]
