"""The hook keys (config/hooks.py) as stages.ini gives them, and the pure parts of running them
(steps/hooks.py): which task names a stage, what a local hook is told, the argv a hook on a host runs.
Plain files in tmp dirs; nothing is started (tests/integration/test_hooks.py runs them on real hosts)."""
from __future__ import annotations

import pytest

from doit_stages.config import HOOKS, Hook, Stage, load_config
from doit_stages.config.hooks import HOOK_NODES
from doit_stages.errors import StepError
from doit_stages.layout import Layout
from doit_stages.steps import hooks
from doit_stages.steps.environment import app_command
from tests.unit.inifile import LOCAL_INI, config_error, in_section, line_of, write_ini


def load(tmp_path, text):
    return load_config(write_ini(tmp_path, text), environ={})


def test_the_hook_keys_are_before_and_after_each_node_and_the_two_outcomes():
    assert HOOK_NODES == ("upload", "build", "migrate", "switch", "verify")
    assert list(HOOKS) == ["before_upload", "after_upload", "before_build", "after_build", "before_migrate",
                           "after_migrate", "before_switch", "after_switch", "before_verify", "after_verify",
                           "on_success", "on_failure"]
    assert all(spec.doc and "\n" not in spec.doc for spec in HOOKS.values())


def test_a_hook_is_split_at_load_and_local_is_its_prefix(tmp_path):
    text = in_section(LOCAL_INI, "project", "after_build = sh -c 'test -f ok ; echo \"built $1\"' x   ; a check\n"
                                            "on_success = local: ./notify 'deployed it'")
    cfg = load(tmp_path, text)
    assert cfg.project.hook("after_build") == Hook("after_build", "sh -c 'test -f ok ; echo \"built $1\"' x", False,
                                                   ("sh", "-c", 'test -f ok ; echo "built $1"', "x"))
    assert cfg.project.hook("on_success") == Hook("on_success", "local: ./notify 'deployed it'", True,
                                                  ("./notify", "deployed it"))
    assert cfg.project.hook("before_build") is None
    assert cfg.stages["test"].hooks == cfg.project.hooks


def test_a_stage_takes_the_projects_hooks_unless_it_writes_the_key(tmp_path):
    text = in_section(LOCAL_INI, "project", "before_switch = ./check\nafter_switch = local: ./tell")
    text = in_section(text, "stage:staging", "before_switch = ./check-staging\nafter_switch =")
    cfg = load(tmp_path, text)
    test, staging = cfg.stages["test"], cfg.stages["staging"]
    assert test.hook("before_switch").argv == ("./check",) and test.hook("after_switch").local
    assert staging.hook("before_switch").argv == ("./check-staging",)
    assert staging.hook("after_switch") is None     # written empty: no hook for that stage


def test_a_stage_may_have_a_hook_the_project_has_not(tmp_path):
    cfg = load(tmp_path, in_section(LOCAL_INI, "stage:staging", "on_failure = local: ./page-someone"))
    assert cfg.stages["staging"].hook("on_failure").argv == ("./page-someone",)
    assert cfg.stages["test"].hooks == () == cfg.project.hooks


@pytest.mark.parametrize("value, why", [
    ("sh -c 'echo x", "cannot be split into arguments (no closing quotation)"),
    ("local:", "local: names no command; write local: <command>, or leave the key empty for no hook"),
    ("local:   ", "local: names no command"),
    ("'' x", "names an empty program"),
])
@pytest.mark.parametrize("section", ["project", "stage:test"])
def test_a_bad_hook_is_one_line_naming_its_line_section_and_key(tmp_path, section, value, why):
    text = in_section(LOCAL_INI, section, f"before_build = {value}")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, r'^before_build =', section)}: [{section}] before_build: ")
    assert why in msg and "\n" not in msg


def test_a_hook_for_a_role_the_stage_lacks_is_one_line(tmp_path):
    text = in_section(LOCAL_INI, "stage:staging", "after_switch.worker = sudo systemctl restart celery")
    msg = config_error(tmp_path, text)
    assert msg == (f"stages.ini:{line_of(text, r'^after_switch.worker', 'stage:staging')}: [stage:staging] "
                   "after_switch.worker: the stage has no role worker; add hosts.worker = <its hosts>, or fix the "
                   "name (roles: app)")


@pytest.mark.parametrize("section", ["project", "stage:staging"])
def test_a_local_hook_for_one_role_is_refused(tmp_path, section):
    text = in_section(LOCAL_INI, section, "after_switch.app = local: ./notify")
    assert config_error(tmp_path, text).endswith(
        f"[{section}] after_switch.app: a local: hook runs once on this machine, for no role; write it as after_switch")


def test_a_dotted_key_that_is_no_hook_is_unknown(tmp_path):
    assert "[project] colour.worker: unknown key" in config_error(tmp_path, in_section(LOCAL_INI, "project",
                                                                                        "colour.worker = x"))


def stage(**hooks_) -> Stage:
    from doit_stages.config import Host
    return Stage("test", (Host("local"),), "sites/test",
                 hooks=tuple(Hook(k, v, v.startswith("local:"), tuple(v.removeprefix("local:").split()))
                             for k, v in hooks_.items()))


def test_the_command_a_hook_names_is_the_task_on_the_command_line_that_names_its_stage():
    st = stage()
    assert hooks.command_of(["doit", "-v", "2", "deploy:test"], st, "build:test") == "deploy:test"
    assert hooks.command_of(["doit", "promote:staging", "verify:test"], st, "x") == "verify:test"
    assert hooks.command_of(["doit", "deploy:testing"], st, "build:test") == "build:test"


def test_a_local_hook_is_told_deploy_variables():
    ctx = hooks.Context("deploy:test", "test", "blog-2026-12-06-0900-0123456789ab", "0123456789ab" * 3,
                        "blog-2026-12-05-0900-ba9876543210", "ann", "failed", "switch:test: health check failed")
    assert ctx.environ() == {
        "DEPLOY_COMMAND": "deploy:test", "DEPLOY_STAGE": "test", "DEPLOY_RELEASE": "blog-2026-12-06-0900-0123456789ab",
        "DEPLOY_REVISION": "0123456789ab" * 3, "DEPLOY_PREVIOUS": "blog-2026-12-05-0900-ba9876543210",
        "DEPLOY_USER": "ann", "DEPLOY_RESULT": "failed", "DEPLOY_ERROR": "switch:test: health check failed"}


class Recording:
    """A Transport that records the argv it is given and answers as told."""

    def __init__(self, code=0, lines=()):
        from doit_stages.config import Host
        self.host = Host("ssh://deploy@web1:22", "web1", "deploy", 22)
        self.code, self.lines, self.argv = code, lines, None

    def stream_lines(self, argv, on_line):
        self.argv = argv
        for line in self.lines:
            on_line("out", line)
        return self.code, "\n".join(self.lines), ""


def test_a_hook_on_a_host_runs_through_app_command_where_the_release_is_built_else_in_deploy_root(capsys):
    layout, st = Layout("/srv/blog"), stage(after_build="./check --fast")
    t = Recording(lines=["checked"])
    hooks.run_on_host(t, layout, st, st.hook("after_build"), "rid-1")
    prefix = app_command(layout, "test", "rid-1", [])
    assert t.argv == ["sh", "-c", hooks.WHERE, "sh", layout.env_record("rid-1", "test"), "/srv/blog", str(len(prefix)),
                      *prefix, "./check", "--fast"]
    assert capsys.readouterr().out == "   ssh://deploy@web1:22: checked\n"
    hooks.run_on_host(t, layout, st, st.hook("after_build"), None)
    assert t.argv == ["sh", "-c", hooks.WHERE, "sh", "", "/srv/blog", "0", "./check", "--fast"]


def test_a_failing_hook_on_a_host_names_the_host_its_exit_and_last_line():
    st = stage(before_switch="./check")
    with pytest.raises(StepError) as info:
        hooks.run_on_host(Recording(3, ["a", "disk almost full"]), Layout("/srv/blog"), st, st.hook("before_switch"),
                          "rid-1")
    assert str(info.value) == "ssh://deploy@web1:22: exit 3: disk almost full"


def test_a_hook_that_printed_nothing_fails_with_its_exit_status_alone():
    assert hooks.exit_text(1, "", "\n") == "exit 1"
    assert hooks.exit_text(2, "no space left\n", "copying\n") == "exit 2: no space left"


class Run:
    """What around() asks of a Session and a Releases, recording the order of what happened."""

    def __init__(self, failing: str = ""):
        from types import SimpleNamespace
        self.seen: list[str] = []
        self.failing = failing
        self.releases = SimpleNamespace(of=lambda st: SimpleNamespace(id="rid-1"), known=lambda st: None)

    def lock(self, hosts, what):
        self.seen.append(f"lock {what}")

    def run_hook(self, s, st, key, rids, make_context):
        self.seen.append(f"{key} in {rids() if callable(rids) else rids}")
        if key == self.failing:
            raise StepError(f"{key}: failed on 1 of 1 host(s): local: exit 1")


@pytest.mark.parametrize("node", ["upload", "build", "migrate", "verify"])
def test_a_nodes_work_runs_between_its_hooks_after_the_lock(monkeypatch, node):
    run = Run()
    monkeypatch.setattr(hooks, "run_hook", run.run_hook)
    st = stage(**{f"before_{node}": "./before", f"after_{node}": "local: ./after"})
    out = hooks.around(run, run.releases, st, node, lambda: run.seen.append("work") or "done")
    assert out == "done"
    assert run.seen == [f"lock {node}:test", f"before_{node} in rid-1", "work", f"after_{node} in rid-1"]


def test_a_failing_before_hook_fails_the_node_before_its_work(monkeypatch):
    run = Run(failing="before_switch")
    monkeypatch.setattr(hooks, "run_hook", run.run_hook)
    with pytest.raises(StepError) as info:
        hooks.around(run, run.releases, stage(before_switch="./check", after_switch="./never-here"), "switch",
                     lambda: run.seen.append("work"))
    assert run.seen == ["lock switch:test", "before_switch in rid-1"]    # after_switch: the switch's own
    assert str(info.value).endswith("local: exit 1; switch:test changed nothing")


def test_a_node_without_hooks_runs_its_work_alone(monkeypatch):
    run = Run()
    monkeypatch.setattr(hooks, "run_hook", run.run_hook)
    assert hooks.around(run, run.releases, stage(on_success="local: ./tell"), "build", lambda: "built") == "built"
    assert run.seen == []
