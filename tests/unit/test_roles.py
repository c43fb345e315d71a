"""Roles within a stage (config/roles.py): hosts.<role>, primary, KEY.<role> and `<hook>.<role>`, as stages.ini
gives them; and what a stage answers about a host's role. Plain files in tmp dirs; nothing is started
(tests/integration/test_roles.py deploys such a stage to real hosts)."""
from __future__ import annotations

import pytest

from doit_stages.config import load_config
from doit_stages.steps.build import build_inputs
from tests.unit.inifile import LOCAL_INI, config_error, line_of, set_key, write_ini

PROD = """
[stage:prod]
hosts = ssh://deploy@web1, ssh://deploy@web2
hosts.worker = ssh://deploy@worker1
link = sites/prod
reload_command = ./reload-web
health_url = http://{host}/health
batch = 1
"""


def text(*lines: str, base: str = PROD) -> str:
    return LOCAL_INI + base + "".join(f"{line}\n" for line in lines)


def prod(tmp_path, *lines: str, base: str = PROD):
    return load_config(write_ini(tmp_path, text(*lines, base=base)), environ={}).stages["prod"]


def test_hosts_is_role_app_and_hosts_role_its_own_role(tmp_path):
    st = prod(tmp_path)
    assert [str(h) for h in st.hosts] == ["ssh://deploy@web1", "ssh://deploy@web2", "ssh://deploy@worker1"]
    assert [(r.name, [str(h) for h in r.hosts]) for r in st.roles] == [
        ("app", ["ssh://deploy@web1", "ssh://deploy@web2"]), ("worker", ["ssh://deploy@worker1"])]
    assert st.role_of("ssh://deploy@worker1").name == "worker" and st.role_of(st.hosts[1]).name == "app"
    assert str(st.primary) == "ssh://deploy@web1"


def test_a_role_takes_the_stages_keys_unless_it_sets_its_own(tmp_path):
    st = prod(tmp_path, "reload_command.worker = sudo systemctl restart celery", "health_url.worker =",
              "batch.worker = 100%", "build_command.worker = ./build-worker 'a b'")
    app, worker = st.roles
    assert (app.reload_argv, app.health_url, app.batch, app.build_command) == (("./reload-web",),
                                                                               "http://{host}/health", "1", "")
    assert worker.reload_argv == ("sudo", "systemctl", "restart", "celery")
    assert (worker.health_url, worker.batch, worker.build_argv) == ("", "100%", ("./build-worker", "a b"))


def test_the_build_settings_digest_is_the_hosts_roles(tmp_path):
    path = write_ini(tmp_path, text("build_command.worker = ./build-worker"))
    cfg = load_config(path, environ={})
    st = cfg.stages["prod"]
    assert cfg.build_command(st, "ssh://deploy@worker1") == ("./build-worker", ("./build-worker",))
    assert cfg.build_command(st, "ssh://deploy@web2") == ("", ())
    assert build_inputs(cfg, st, st.hosts[0]) == build_inputs(cfg, st, st.hosts[1])
    assert build_inputs(cfg, st, st.hosts[0]) != build_inputs(cfg, st, st.hosts[2])


def test_primary_may_name_any_host_of_the_stage(tmp_path):
    assert str(prod(tmp_path, "primary = ssh://deploy@worker1").primary) == "ssh://deploy@worker1"


def test_a_hook_for_a_role_replaces_the_stages_for_its_hosts(tmp_path):
    st = prod(tmp_path, "before_switch = ./check", "after_switch.worker = ./worker-done", "before_switch.worker =")
    web, worker = st.hosts[0], st.hosts[2]
    assert st.hook("before_switch", web).argv == ("./check",) and st.hook("before_switch", worker) is None
    assert st.hook("after_switch", web) is None and st.hook("after_switch", worker).argv == ("./worker-done",)
    assert st.hook("after_switch") is None and st.has_hook("after_switch")


def test_the_projects_role_hook_applies_to_stages_with_that_role(tmp_path):
    base = LOCAL_INI.replace("build = none\n", "build = none\nafter_switch.worker = ./worker-done\n")
    path = write_ini(tmp_path, base + PROD)
    cfg = load_config(path, environ={})
    assert cfg.stages["prod"].hook("after_switch", "ssh://deploy@worker1").argv == ("./worker-done",)
    assert not cfg.stages["test"].has_hook("after_switch")


@pytest.mark.parametrize("line, key, why", [
    ("hosts.web-2 = ssh://deploy@web3", "hosts.web-2", "'web-2' is not a role name; use letters, digits and _"),
    ("hosts.app = ssh://deploy@web3", "hosts.app", "app is the role of hosts; list these hosts in hosts"),
    ("hosts.cron = ssh://deploy@web2", "hosts.cron", "ssh://deploy@web2 is already in hosts; a host has one role: "
                                                     "list it in one of them"),
    ("hosts.cron = ssh://deploy@WORKER1:22", None, None),
    ("hosts.cron =", "hosts.cron", "missing; list the role's hosts, e.g. hosts.cron = ssh://"),
    ("primary = ssh://deploy@db1", "primary", "ssh://deploy@db1 is not one of the stage's hosts; name one listed in "
                                              "hosts or hosts.<role>"),
    ("reload_command.cron = x", "reload_command.cron", "the stage has no role cron; add hosts.cron = <its hosts>, "
                                                       "or fix the name (roles: app, worker)"),
    ("batch.worker = 0", "batch.worker", "'0' is not a number of hosts or a share like 50%"),
    ("health_url.worker = ftp://x", "health_url.worker", "must be an http:// or https:// URL"),
    ("reload_command.worker = sh -c 'x", "reload_command.worker", "cannot be split into arguments"),
    ("max_fail.worker = 1", "max_fail.worker", "unknown key"),
])
def test_a_bad_role_key_is_one_line_naming_its_line_section_and_key(tmp_path, line, key, why):
    body = text(line)
    if key is None:   # ssh://deploy@WORKER1:22 may be worker1 on port 22: only the written spelling is compared
        body = text(line.replace(":22", ""))
        key, why = "hosts.cron", "ssh://deploy@WORKER1 is already in hosts.worker; a host has one role"
    msg = config_error(tmp_path, body)
    assert msg.startswith(f"stages.ini:{line_of(body, '^' + key.replace('.', '[.]'), 'stage:prod')}: "
                          f"[stage:prod] {key}: "), msg
    assert why in msg


def test_role_keys_in_the_project_are_refused_but_for_hooks(tmp_path):
    base = LOCAL_INI.replace("build = none\n", "build = none\nreload_command.worker = x\n")
    assert "[project] reload_command.worker: unknown key" in config_error(tmp_path, base + PROD)


def test_a_stage_without_roles_is_one_role_app_on_its_first_host(tmp_path):
    st = prod(tmp_path, base=set_key(PROD, "stage:prod", "hosts.worker", None))
    assert [r.name for r in st.roles] == ["app"] and str(st.primary) == "ssh://deploy@web1"
    assert st.roles[0].reload_argv == ("./reload-web",) and st.roles[0].batch == "1"
