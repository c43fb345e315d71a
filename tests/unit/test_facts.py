"""Facts: each state script of a step and its pure parser (pyinfra's facts). Here each parser on canned
output (tests/facts/<fact>/<case>.json: command, args, output, fact), as pyinfra's tests/facts/<Fact>/*.json:
the command names the script that printed the output (a tasks/hostside/ file, or a step's one-line constant:
"steps/cleanup.py SCAN"), and it must be the one the step sends; each script run for real is in
tests/integration/test_facts.py (and test_lock_liveness.py for the lock)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from doit_stages import hostside
from doit_stages.runtime import leftovers, lock
from doit_stages.steps import build, cleanup, facts, switch, switch_state
from doit_stages.steps.database import backup
from doit_stages.transport import hostname_of

FACTS = Path(__file__).parents[1] / "facts"
STEPS = {"steps/database/backup.py": backup, "steps/cleanup.py": cleanup, "runtime/leftovers.py": leftovers}


def _scan(text):
    linked, names, log = cleanup.parse_scan(text)
    return [sorted(linked), names, log]


PARSERS = {
    "switch_state": switch.parse_state,
    "stage_state": build.parse_stage_state,
    "scan": _scan,
    "leftovers": lambda text: list(leftovers.parse_listing(text)),
    "backup_list": lambda text, database: list(backup.parse_backup_list(text, database)),
    "facts": facts.parse_facts,
    "ssh_hostname": hostname_of,
    "lock_state": lambda text: list(lock.parse_probe(text)),
}
# the script each fact's step sends (lock_probe.sh after watch_lib.sh's functions)
SENT = {"switch_state": switch_state.STATE, "stage_state": build.STAGE_STATE, "scan": cleanup.SCAN,
        "leftovers": leftovers.LIST, "backup_list": backup.LIST, "facts": facts.FACTS, "lock_state": lock.PROBE,
        "ssh_hostname": "ssh -G"}   # the deploying machine's own ssh (transport.SSHTransport.address)
CASES = sorted((d.name, f) for d in FACTS.iterdir() for f in d.glob("*.json"))


def test_every_fact_has_cases_and_every_case_a_parser():
    assert {name for name, _ in CASES} == set(PARSERS) == set(SENT)


def script_of(command: str) -> str:
    """"facts.sh": that file of tasks/hostside/ as sent; "steps/cleanup.py SCAN": that constant."""
    if command.endswith(".sh"):
        return hostside.script(command)
    if command == "ssh -G":
        return command
    path, _, name = command.partition(" ")
    return getattr(STEPS[path], name)


@pytest.mark.parametrize("fact, path", CASES, ids=[f"{n}/{p.stem}" for n, p in CASES])
def test_parser_on_canned_output(fact, path):
    case = json.loads(path.read_text())
    assert SENT[fact].endswith(script_of(case["command"]))
    assert PARSERS[fact](case["output"], *case.get("args", [])) == case["fact"]
