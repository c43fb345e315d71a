"""tasks/report.py: the CI report of a run (DEPLOY_REPORT, GITHUB_STEP_SUMMARY) from what the reporter noted,
and the check of the output variables before anything runs. Plain inputs: a config from the lab's local
stages.ini, doit's tasks as plain objects."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from doit_stages import report
from doit_stages.runtime.known_links import KnownLinks


@pytest.fixture
def config(tmp_path):
    from doit_stages.config import load_config
    from tests.lab.stages_ini import LOCAL_INI
    ini = tmp_path / "stages.ini"
    ini.write_text(LOCAL_INI)
    return load_config(ini)


def task(deps=(), actions=True, setup=()):
    return SimpleNamespace(task_dep=list(deps), setup_tasks=list(setup), actions=["a"] if actions else [])


def test_an_output_in_no_directory_is_named_in_one_line(tmp_path):
    assert report.check_outputs({}, tmp_path) is None
    assert report.check_outputs({"DEPLOY_REPORT": "", "DEPLOY_JUNIT_XML": "out/v.xml"}, tmp_path) == (
        f"DEPLOY_JUNIT_XML=out/v.xml: directory {tmp_path / 'out'} does not exist; create it or point "
        "DEPLOY_JUNIT_XML at a file in an existing directory")
    (tmp_path / "out").mkdir()
    assert report.check_outputs({"DEPLOY_JUNIT_XML": "out/v.xml", "DEPLOY_REPORT": str(tmp_path)},
                                tmp_path).startswith(f"DEPLOY_REPORT={tmp_path}: is a directory")
    assert report.check_outputs({"DEPLOY_JUNIT_XML": "out/v.xml", "GITHUB_STEP_SUMMARY": "s.md"}, tmp_path) is None


def test_the_nodes_are_in_doits_order_without_groups_or_hidden_tasks():
    tasks = {"deploy:test": task(["archive", "upload:test", "switch:test"], actions=False),
             "archive": task(setup=["_x"]), "_x": task(), "upload:test": task(["archive"]),
             "switch:test": task(["upload:test"]), "status": task()}
    assert report.run_order(tasks, ["deploy:test"]) == ["archive", "upload:test", "switch:test"]
    assert report.run_order(tasks, ["status", "nosuch"]) == ["status"]


def test_a_failed_run_reports_each_node_and_the_error(config):
    links = KnownLinks()
    session = SimpleNamespace(known_links=links, rehearsal_reports=[])
    releases = SimpleNamespace(known_id=lambda stage: "blog-20261206-abc" if stage.name == "test" else None)
    order = ["archive", "upload:test", "build:test", "switch:test"]
    done = {"archive": {"status": "up to date", "seconds": 0.1}, "upload:test": {"status": "ran", "seconds": 1.5},
            "build:test": {"status": "failed", "seconds": 2.0}}
    rep = report.summarize(config, session, releases, ["deploy:test"], order, done,
                           "build:test: pip failed on local", 100.0)
    assert (rep["command"], rep["stage"], rep["release"], rep["result"]) == (
        "deploy:test", "test", "blog-20261206-abc", "failed")
    assert rep["error"] == "build:test: pip failed on local"
    assert [(n["name"], n["status"]) for n in rep["nodes"]] == [
        ("archive", "up to date"), ("upload:test", "ran"), ("build:test", "failed"), ("switch:test", "not run")]
    assert rep["nodes"][0]["hosts"] == [] and rep["nodes"][1]["hosts"] == ["local"]
    assert rep["roles"] == {"app": ["local"]}
    assert "Roles:" not in report.markdown(rep)      # one role: the nodes' hosts say it all
    json.dumps(rep)


def test_the_report_names_each_role_of_the_stage_and_its_hosts(tmp_path):
    from doit_stages.config import load_config
    from tests.unit.inifile import LOCAL_INI, write_ini
    config = load_config(write_ini(tmp_path, LOCAL_INI + """
[stage:prod]
hosts = ssh://deploy@web1, ssh://deploy@web2
hosts.worker = ssh://deploy@worker1
link = sites/prod
"""), environ={})
    session = SimpleNamespace(known_links=KnownLinks(), rehearsal_reports=[])
    releases = SimpleNamespace(known_id=lambda stage: "blog-20261206-abc")
    rep = report.summarize(config, session, releases, ["switch:prod"], ["switch:prod"],
                           {"switch:prod": {"status": "ran", "seconds": 1.0}}, None, 100.0)
    assert rep["roles"] == {"app": ["ssh://deploy@web1", "ssh://deploy@web2"], "worker": ["ssh://deploy@worker1"]}
    assert rep["nodes"][0]["hosts"] == ["ssh://deploy@web1", "ssh://deploy@web2", "ssh://deploy@worker1"]
    assert ("Roles: `app`: `ssh://deploy@web1`, `ssh://deploy@web2`; `worker`: `ssh://deploy@worker1`.\n"
            in report.markdown(rep))
    # a command refused before any node ran, or one of no stage (backup:<database>): no roles
    assert report.build_report("backup:prod", None, None, [], "x", 100.0, 101.0)["roles"] == {}


def test_an_interrupted_node_failed_and_verify_names_the_release_its_link_points_at(config):
    links = KnownLinks()
    stage = config.stages["test"]
    for h in stage.hosts:
        links.hold(h)
        links.remember(h, stage.link, "../releases/blog-20261206-def")
    session = SimpleNamespace(known_links=links, rehearsal_reports=[])
    releases = SimpleNamespace(known_id=lambda stage: None)
    rep = report.summarize(config, session, releases, ["verify:test"], ["verify:test"],
                           {"verify:test": {"status": None, "seconds": None}}, None, 100.0)
    assert rep["release"] == "blog-20261206-def" and rep["result"] == "failed"
    assert rep["error"] == "verify:test: interrupted" and rep["nodes"][0]["status"] == "failed"
    # a promotion that never found its release names none, not what the stage ran before
    rep = report.summarize(config, session, releases, ["promote:staging"], [], {}, "x", 100.0)
    assert rep["stage"] == "staging" and rep["release"] is None


def test_the_report_is_written_whole_and_the_summary_appended(tmp_path):
    rep = report.build_report("deploy:test", "test", "blog-1", [
        {"name": "upload:test", "status": "ran", "seconds": 1.3, "hosts": ["ssh://deploy@web1"]}],
        None, 100.0, 112.5)
    env = {"DEPLOY_REPORT": "r.json", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    assert report.emit(env, tmp_path, rep, ["### Migration rehearsal of `blog-1`\n"]) == []
    assert report.emit(env, tmp_path, rep) == []
    assert json.loads((tmp_path / "r.json").read_text()) == rep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "summary.md"]   # no temporary file left
    md = (tmp_path / "summary.md").read_text()
    assert md.count("### ✅ `doit deploy:test`: ok") == 2 and md.count("Migration rehearsal of `blog-1`") == 1
    assert "Stage `test`, release `blog-1`, 12.5 s." in md and "`blog-1`\n\n### ✅" in md   # blocks apart
    assert "| `upload:test` | ran | 1.3 | `ssh://deploy@web1` |" in md
    env = {"DEPLOY_REPORT": str(tmp_path / "gone" / "r.json")}
    assert report.emit(env, tmp_path, rep)[0].startswith(f"DEPLOY_REPORT={tmp_path}/gone/r.json: not written")
