"""CI (issue 21): the commands examples/ci/ calls, run against the lab as a CI job runs them, with
DEPLOY_REPORT (relative, as the examples set it: where doit was run), DEPLOY_JUNIT_XML and GITHUB_STEP_SUMMARY;
then a failing verify (JUnit XML with the assertion), a failed promotion (the nodes it did not run) and an
output in no directory. Two real sshd hosts, a real MariaDB, the blog's real migrations; in order, on one
project."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.lab.ci_examples import github, github_commands, gitlab_commands

FAILING_CHECK = '''\
def test_greeting(host):
    assert host.check_output("echo hello") == "goodbye"
'''
CHAIN = ["archive", "backup:prod", "upload:test", "build:test", "restore:test", "migrate:test", "switch:test",
         "verify:test"]


@pytest.fixture(scope="module")
def world(blog_world):
    out = blog_world["project"].workdir / "ci-out"
    out.mkdir()
    blog_world["summary"] = out / "step-summary.md"
    return blog_world


def ci_env(world) -> dict:
    """What the examples' jobs set (DEPLOY_REPORT, DEPLOY_JUNIT_XML: relative to the job's directory), and
    what GitHub sets itself (GITHUB_STEP_SUMMARY)."""
    return {**github()["env"], "GITHUB_STEP_SUMMARY": str(world["summary"])}


def outputs(world) -> tuple[dict, str]:
    work = world["project"].workdir
    return json.loads((work / "ci-out/report.json").read_text()), world["summary"].read_text()


def junit(world) -> ET.Element:
    return ET.fromstring((world["project"].workdir / "ci-out/verify.xml").read_text())


def rid(link: str | None) -> str | None:
    return link.rsplit("/", 1)[-1] if link else None


def test_the_examples_deploy_test_reports_each_node_the_release_and_the_rehearsal(world):
    p, hosts = world["project"], world["hosts"]
    words = github_commands()["deploy-test"]
    assert words == gitlab_commands()["deploy-test"] == ["deploy:test"]
    p.ok(*words, env=ci_env(world))
    release = rid(p.links("sites/test")[0])
    rep, summary = outputs(world)
    assert (rep["command"], rep["stage"], rep["release"], rep["result"], rep["error"]) == (
        "deploy:test", "test", release, "ok", None)
    assert [(n["name"], n["status"]) for n in rep["nodes"]] == [(n, "ran") for n in CHAIN]
    nodes = {n["name"]: n for n in rep["nodes"]}
    assert nodes["upload:test"]["hosts"] == [h.url for h in hosts] and nodes["archive"]["hosts"] == []
    assert rep["roles"] == {"app": [h.url for h in hosts]}
    assert all(n["seconds"] >= 0 for n in rep["nodes"])
    assert rep["rehearsal_reports"] == [str(p.workdir / "build/rehearsals" / f"{release}.md")]
    # the step summary: the run's table, then the rehearsal's report as the rehearsal wrote it on the host
    assert "### ✅ `doit deploy:test`: ok" in summary and f"release `{release}`" in summary
    assert "| `migrate:test` | ran |" in summary and "| `archive` | ran |" in summary
    on_host = hosts[0].path(f"/srv/blog/.deploy/rehearsals/{release}.md").read_text()
    assert on_host.startswith(f"### Migration rehearsal of `{release}`") and on_host in summary
    assert "posts.0001_initial" in summary
    # the built-in checks, one suite for the release, all passed
    root = junit(world)
    assert [s.get("name") for s in root] == [f"verify:test release {release}"]
    assert int(root[0].get("tests")) > 0 and root[0].get("failures") == root[0].get("errors") == "0"


def test_the_examples_promotions_report_the_release_they_shipped(world):
    p = world["project"]
    release = rid(p.links("sites/test")[0])
    for job, link in (("promote-staging", "sites/staging"), ("promote-prod", "sites/current")):
        words = github_commands()[job]
        assert words == gitlab_commands()[job]
        p.ok(*words, env=ci_env(world))
        rep, summary = outputs(world)
        assert (rep["command"], rep["release"], rep["result"]) == (words[0], release, "ok")
        assert [rid(x) for x in p.links(link)] == [release, release]
        assert {n["status"] for n in rep["nodes"]} <= {"ran", "up to date"} and rep["nodes"][-1]["status"] == "ran"
        assert f"### ✅ `doit {words[0]}`: ok" in summary
    assert summary.count("### Migration rehearsal of") == 1   # a promotion rehearses nothing


def test_a_second_deploy_reports_what_was_up_to_date(world):
    p = world["project"]
    p.ok("deploy:test", env=ci_env(world))
    rep, summary = outputs(world)
    status = {n["name"]: n["status"] for n in rep["nodes"]}
    # restore:test ran: promote:staging backed production up after migrating it, a newer copy for test
    assert status == {**{n: "up to date" for n in CHAIN}, "restore:test": "ran", "verify:test": "ran"}
    assert rep["rehearsal_reports"] == [] and summary.count("### Migration rehearsal of") == 1


def test_a_failing_verify_writes_junit_xml_with_the_assertion(world, tmp_path):
    p, hosts = world["project"], world["hosts"]
    (tmp_path / "test_greetings.py").write_text(FAILING_CHECK)
    p.write(project_extra=f"infra_tests = {tmp_path}\n")
    try:
        res = p.doit("verify:test", env=ci_env(world))
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        rep, summary = outputs(world)
        root = junit(world)
        failed = p.doit("promote:staging", env=ci_env(world))   # test's release did not pass verify:test
        after, _ = outputs(world)
    finally:
        p.write(project_extra="")
    release = rid(p.links("sites/test")[0])
    suite = root[0]
    assert suite.get("name") == f"verify:test release {release}" and suite.get("failures") == "2"
    cases = {c.get("name"): c for c in suite if c.get("classname") == "test_greetings"}
    assert sorted(cases) == sorted(f"test_greeting[{h.url}]" for h in hosts)
    for case in cases.values():
        failure = case.find("failure")
        assert "assert 'hello' == 'goodbye'" in failure.get("message")
        assert "- goodbye" in failure.text and "+ hello" in failure.text   # pytest's comparison, whole
    assert all(c.find("failure") is None for c in suite if c.get("classname") != "test_greetings")
    assert (rep["command"], rep["release"], rep["result"]) == ("verify:test", release, "failed")
    assert rep["error"].startswith(f"verify:test: infra-tests failed for {release}: test_greetings.py::")
    assert f"ERROR: {rep['error']}" in res.stderr
    assert [(n["name"], n["status"]) for n in rep["nodes"]] == [("verify:test", "failed")]
    assert "### ❌ `doit verify:test`: failed" in summary and rep["error"] in summary
    # a promotion that stops at its first node: the others did not run
    assert failed.returncode == 1
    assert after["result"] == "failed" and "has not passed verify:test" in after["error"]
    assert [(n["name"], n["status"]) for n in after["nodes"]] == [
        ("upload:staging", "failed"), ("build:staging", "not run"), ("migrate:staging", "not run"),
        ("switch:staging", "not run"), ("verify:staging", "not run")]


def test_an_output_in_no_directory_stops_before_anything(world):
    p = world["project"]
    before = p.links("sites/current")
    res = p.doit("promote:prod", env={**ci_env(world), "DEPLOY_JUNIT_XML": "nowhere/verify.xml"})
    line = (f"ERROR: DEPLOY_JUNIT_XML=nowhere/verify.xml: directory {p.workdir / 'nowhere'} does not exist; "
            "create it or point DEPLOY_JUNIT_XML at a file in an existing directory")
    assert res.returncode == 1 and res.stderr.strip() == line, res.stderr
    rep, _ = outputs(world)
    assert (rep["command"], rep["stage"], rep["result"], rep["error"], rep["nodes"]) == (
        "promote:prod", "prod", "failed", line[7:], [])
    assert p.links("sites/current") == before


def test_a_command_refused_at_load_still_reports(world):
    p = world["project"]
    res = p.doit("deploy:staging", env=ci_env(world))
    assert res.returncode == 1 and res.stderr.strip().startswith("ERROR: deploy:staging: stage staging is promoted")
    rep, summary = outputs(world)
    assert (rep["command"], rep["stage"], rep["result"], rep["nodes"]) == ("deploy:staging", "staging", "failed", [])
    assert res.stderr.strip() == f"ERROR: {rep['error']}"
    assert summary.rstrip().endswith(f"```\n{rep['error']}\n```")


def test_no_password_in_what_ci_keeps(world):
    from tests.lab.common import NASTY_PASSWORD
    work = world["project"].workdir
    kept = [work / "ci-out/report.json", work / "ci-out/verify.xml", world["summary"],
            *(work / "build/rehearsals").glob("*.md")]
    assert all(p.is_file() for p in kept)
    for path in kept:
        assert NASTY_PASSWORD not in path.read_text(), path
