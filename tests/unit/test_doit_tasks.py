"""tasks/start.py's reading of doit's command line: which words are task names, and whether a command
runs tasks at all (which decides the passwords it needs: tests/integration/test_cli_config_errors.py)."""
from __future__ import annotations


def test_task_words_skip_doit_options_and_their_values():
    from doit_stages.start import runs_tasks, task_words
    argv = ["doit", "-f", "/x/dodo.py", "-v", "2", "--backend=sqlite3", "DEPLOY_X=1", "deploy:test", "-n", "2"]
    assert task_words(argv) == ["deploy:test"]
    assert not runs_tasks(["doit", "-f", "dodo.py", "list"]) and not runs_tasks(["doit", "-d", "list", "info"])
    assert runs_tasks(["doit", "-f", "dodo.py", "status"]) and runs_tasks(["doit"])


def test_deploy_of_a_promoted_stage_says_to_promote_it(tmp_path):
    from doit_stages.config import load_config
    from doit_stages.start import wrong_chain
    from tests.lab.stages_ini import LOCAL_INI
    ini = tmp_path / "stages.ini"
    ini.write_text(LOCAL_INI)
    config = load_config(ini)   # test, and staging promoted from it
    assert wrong_chain(config, ["deploy:staging"]) == (
        "deploy:staging: stage staging is promoted from test ([stage:staging] promote_from), not deployed: "
        "run doit promote:staging")
    assert wrong_chain(config, ["deploy:test", "promote:test"]).endswith("run doit deploy:test")
    assert wrong_chain(config, ["deploy:test", "promote:staging", "deploy:nosuch", "status"]) is None


def test_a_node_with_an_after_hook_is_done_only_once_its_hook_passed_for_the_release():
    """doit keeps what an action returns only when it succeeded: a failed after_build leaves no record of
    this release, so the rerun does build:<stage> (and its hooks) again although the hosts are built."""
    from types import SimpleNamespace

    from doit.exceptions import TaskFailed

    from doit_stages.config import Hook, Host, Stage
    from doit_stages.doit_tasks import _after_hook
    hook = Hook("after_build", "./check", False, ("./check",))
    stage = Stage("test", (Host("local"),), "sites/test", hooks=(hook,))
    run = SimpleNamespace(releases=SimpleNamespace(of=lambda st: SimpleNamespace(id="rid-2")))
    outcome, built = [None], [True]
    task = {"actions": [lambda: outcome[0]], "uptodate": [lambda: built[0]], "name": "test"}
    assert _after_hook(run, "build", Stage("test", (Host("local"),), "sites/test"), task) is task
    assert _after_hook(run, "switch", Stage("test", (Host("local"),), "sites/test", hooks=(
        Hook("after_switch", "x", False, ("x",)),)), task) is task     # the switch runs its own
    hooked = _after_hook(run, "build", stage, task)
    action, uptodate = hooked["actions"][0], hooked["uptodate"][0]
    assert action() == {"after_build": "rid-2"}
    outcome[0] = TaskFailed("build:test: after_build: failed on 1 of 1 host(s): local: exit 1")
    assert action() is outcome[0]
    assert uptodate(None, {"after_build": "rid-2"}) and not uptodate(None, {"after_build": "rid-1"})
    assert not uptodate(None, {})
    built[0] = False
    assert not uptodate(None, {"after_build": "rid-2"})


def test_a_failed_nodes_line_is_named_by_the_node_once():
    from doit.exceptions import TaskError, TaskFailed

    from doit_stages.doit_tasks import error_line
    assert error_line("build:test", TaskFailed("web1: pip failed")) == "build:test: web1: pip failed"
    assert error_line("verify:test", TaskFailed("verify:test: infra-tests failed")) == "verify:test: infra-tests failed"
    try:
        raise ValueError("a bug\nwith two lines")
    except ValueError as exc:
        bug = TaskError("PythonAction Error", exc)
    assert error_line("switch:test", bug) == "switch:test: TaskError: ValueError: a bug"
