"""DEPLOY_JUNIT_XML=<path>: verify's checks as JUnit XML, the form CI systems show as test results (GitHub
Actions through a test-report action, GitLab's `artifacts:reports:junit`). One <testsuite> per verify of a
stage and release in the run (a stage whose hosts run different releases is checked once per release);
each failed check's <failure> holds its assertion: the message as its `message`, pytest's whole report as
its text. Pure: the checks' outcomes come from steps/infra_plugin.py."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # imported when a file is written: a run without DEPLOY_JUNIT_XML never needs it
    import xml.etree.ElementTree as ET


@dataclass
class Case:
    """One check on one host: `test_stage.py::test_env_file_is_private[ssh://deploy@web1]`."""
    id: str
    outcome: str = "passed"          # passed | failed | error (its setup failed) | skipped
    seconds: float = 0.0
    message: str = ""                # the assertion's first lines (what the one-line error quotes)
    text: str = ""                   # pytest's whole report of it

    @property
    def file(self) -> str:
        return self.id.partition("::")[0]

    @property
    def name(self) -> str:
        return self.id.partition("::")[2] or self.id


@dataclass
class Suite:
    name: str                        # `verify:test release blog-2026...`
    cases: list[Case] = field(default_factory=list)


def element(suite: Suite) -> ET.Element:
    import xml.etree.ElementTree as ET

    count = {k: sum(c.outcome == k for c in suite.cases) for k in ("failed", "error", "skipped")}
    el = ET.Element("testsuite", name=suite.name, tests=str(len(suite.cases)), failures=str(count["failed"]),
                    errors=str(count["error"]), skipped=str(count["skipped"]),
                    time=f"{sum(c.seconds for c in suite.cases):.3f}")
    for c in suite.cases:
        case = ET.SubElement(el, "testcase", classname=c.file.removesuffix(".py"), name=c.name,
                             time=f"{c.seconds:.3f}")
        if c.outcome in ("failed", "error", "skipped"):
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}[c.outcome]
            sub = ET.SubElement(case, tag, message=c.message.splitlines()[0] if c.message else c.outcome)
            sub.text = "\n\n".join(t for t in (c.message, c.text) if t)
    return el


def document(suites: list[Suite]) -> str:
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="doit-stages verify")
    root.extend(element(s) for s in suites)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(path: Path, suites: list[Suite]) -> None:
    """The whole document or none: written beside the file, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(document(suites))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
