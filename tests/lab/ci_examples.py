"""examples/ci/ as the tests read it: the GitHub Actions workflow and the GitLab CI pipeline (PyYAML), and the
`doit` commands each job calls, for tests/unit/test_ci_examples.py (their structure) and
tests/integration/test_ci.py (the same commands against the lab)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "examples/ci/github/deploy.yml"
GITLAB = ROOT / "examples/ci/gitlab-ci.yml"
DOIT = re.compile(r"^\s*doit\s+(.*)$", re.M)


def doit_commands(script: str) -> list[str]:
    """The task words of each `doit ...` line of a shell script (its comment and options dropped)."""
    return [w for line in DOIT.findall(script) for w in line.split("#")[0].split() if not w.startswith("-")]


def github() -> dict:
    return yaml.safe_load(GITHUB.read_text())


def gitlab() -> dict:
    return yaml.safe_load(GITLAB.read_text())


def github_commands() -> dict[str, list[str]]:
    return {name: [w for step in job["steps"] for w in doit_commands(step.get("run", ""))]
            for name, job in github()["jobs"].items()}


def gitlab_jobs() -> dict[str, dict]:
    """The pipeline's jobs with `extends` applied (one level, as the file uses it)."""
    doc = gitlab()
    return {name: {**doc.get(job.get("extends", ""), {}), **job} for name, job in doc.items()
            if isinstance(job, dict) and not name.startswith(".") and "script" in job}


def gitlab_commands() -> dict[str, list[str]]:
    return {name: [w for line in job["script"] for w in doit_commands(line)] for name, job in gitlab_jobs().items()}
