"""tasks/junit.py: verify's checks as JUnit XML, read back with xml.etree as a CI system reads it."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from doit_stages.junit import Case, Suite, document


def test_a_failed_check_carries_its_assertion():
    suite = Suite("verify:prod release blog-1", [
        Case("test_stage.py::test_link[ssh://deploy@web1]", seconds=0.25),
        Case("test_app.py::test_motd[ssh://deploy@web1]", "failed", 0.5,
             "/srv/blog/releases/blog-1/MOTD is missing <& \"quotes\"> (test_app.py:3)",
             "def test_motd(host):\n>       assert motd.exists\nE       AssertionError"),
        Case("test_app.py::test_db[ssh://deploy@web1]", "error", message="fixture 'db' not found"),
        Case("test_app.py::test_later", "skipped", message="not yet")])
    root = ET.fromstring(document([suite, Suite("verify:prod release blog-2")]))
    assert root.tag == "testsuites" and [s.get("name") for s in root] == [
        "verify:prod release blog-1", "verify:prod release blog-2"]
    s = root[0]
    assert (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) == ("4", "1", "1", "1")
    cases = {c.get("name"): c for c in s}
    assert cases["test_link[ssh://deploy@web1]"].get("classname") == "test_stage"
    assert list(cases["test_link[ssh://deploy@web1]"]) == []
    failure = cases["test_motd[ssh://deploy@web1]"].find("failure")
    assert failure.get("message") == "/srv/blog/releases/blog-1/MOTD is missing <& \"quotes\"> (test_app.py:3)"
    assert "assert motd.exists" in failure.text and failure.text.startswith("/srv/blog/releases/blog-1/MOTD")
    assert cases["test_db[ssh://deploy@web1]"].find("error").get("message") == "fixture 'db' not found"
    assert cases["test_later"].find("skipped") is not None
    assert root[1].get("tests") == "0"


def test_the_file_is_written_whole(tmp_path):
    from doit_stages.junit import write
    path = tmp_path / "verify.xml"
    path.write_text("an older run's")
    write(path, [Suite("verify:test release blog-1", [Case("test_stage.py::test_link[local]")])])
    assert ET.parse(path).getroot()[0][0].get("name") == "test_link[local]"
    assert [p.name for p in tmp_path.iterdir()] == ["verify.xml"]
