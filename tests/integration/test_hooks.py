"""Hooks on a code-only stage of two real sshd hosts, driven by doit as a user runs it: a hook on the hosts
runs in the release with its env, a `local:` one here with DEPLOY_*, a failing before_switch switches
nothing and runs again on the rerun, a failing after_switch puts every host back, a failing after_build
runs again on the rerun, and an up-to-date rerun runs no node's hook. The tests of this module run in
order on one project."""
from __future__ import annotations

import getpass

import pytest

from tests.lab.apprepo import AppRepo
from tests.lab.project import Project
from tests.lab.stages_ini import CODE_ONLY, stages_ini

INI = stages_ini(CODE_ONLY, {"project": {"build": "none"}})
LOG = "/srv/blog/hooks.log"
# each hook on the hosts appends its name to LOG; the two checks fail while their file is on the host
HOOKS = """\
after_build = sh -c 'printf "%s\\n" "$STAGE" "$STAGE_DIR" "$PWD" > after_build.out; echo after_build >> {log}; \
test ! -e /srv/blog/deny-build && echo after_build ran'
before_switch = sh -c 'echo before_switch >> {log}; test ! -e /srv/blog/deny-switch'
after_switch = sh -c 'echo after_switch >> {log}; test ! -e /srv/blog/deny-after-switch'
on_success = local: sh -c 'env | grep ^DEPLOY_ | sort > on_success.env; echo told'
on_failure = local: sh -c 'env | grep ^DEPLOY_ | sort > on_failure.env; exit 3'
""".format(log=LOG)


@pytest.fixture(scope="module")
def world(ssh_hosts, tmp_path_factory):
    ssh_hosts.reset()
    base = tmp_path_factory.mktemp("hooks")
    repo = AppRepo(base / "blog")
    (base / "work").mkdir()
    hosts = [ssh_hosts["web1"], ssh_hosts["web2"]]
    p = Project(base / "work", repo.path, hosts, ssh_hosts.ssh_config, template=INI)
    p.write(project_extra=HOOKS)
    return {"project": p, "hosts": hosts, "repo": repo}


def hook_log(host) -> list[str]:
    path = host.path(LOG)
    return path.read_text().split() if path.exists() else []


def deploy_env(p: Project, name: str) -> dict[str, str]:
    lines = (p.workdir / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def rid_of(link: str) -> str:
    return link.rsplit("/", 1)[-1]


def test_a_first_deploy_runs_the_hooks_in_the_release_and_tells_a_local_one_what_it_did(world):
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    res = p.ok("deploy:test")
    links = p.links("sites/test")
    rid = rid_of(links[0])
    assert links == [f"../releases/{rid}"] * 2
    for host in hosts:
        out = host.path(f"/srv/blog/releases/{rid}/after_build.out").read_text().splitlines()
        assert out == ["test", f"/srv/blog/shared/test/{rid}", f"/srv/blog/releases/{rid}"]
        assert hook_log(host) == ["after_build", "before_switch", "after_switch"]
        assert f"   {host.url}: after_build ran" in res.stdout.splitlines()
    assert "   local: told" in res.stdout.splitlines()
    assert deploy_env(p, "on_success.env") == {
        "DEPLOY_COMMAND": "deploy:test", "DEPLOY_STAGE": "test", "DEPLOY_RELEASE": rid,
        "DEPLOY_REVISION": repo._run("git", "rev-parse", "HEAD").strip(), "DEPLOY_PREVIOUS": "",
        "DEPLOY_USER": getpass.getuser(), "DEPLOY_RESULT": "ok", "DEPLOY_ERROR": ""}
    assert not (p.workdir / "on_failure.env").exists()


def test_an_up_to_date_rerun_runs_no_nodes_hook(world):
    p, hosts = world["project"], world["hosts"]
    before = [hook_log(h) for h in hosts]
    (p.workdir / "on_success.env").unlink()
    res = p.ok("deploy:test")
    assert [ln for ln in res.stdout.splitlines() if ln.startswith(".  ")] == [".  verify:test"], res.stdout
    assert [hook_log(h) for h in hosts] == before
    rid = rid_of(p.links("sites/test")[0])
    told = deploy_env(p, "on_success.env")   # the command ran (verify): on_success says what runs
    assert (told["DEPLOY_RELEASE"], told["DEPLOY_PREVIOUS"], told["DEPLOY_RESULT"]) == (rid, rid, "ok")


def test_a_failing_before_switch_switches_nothing_and_runs_again_on_the_rerun(world):
    p, repo, (web1, web2) = world["project"], world["repo"], world["hosts"]
    before = p.links("sites/test")
    repo.commit("r2", {"static/version.txt": "r2\n"})
    web2.path("/srv/blog/deny-switch").write_text("")
    try:
        for attempt in (1, 2):
            res = p.doit("deploy:test")
            assert res.returncode == 1, res.stdout + res.stderr
            assert p.links("sites/test") == before
            assert [hook_log(h).count("before_switch") for h in (web1, web2)] == [1 + attempt] * 2
            errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR:")]
            assert errors == [f"ERROR: switch:test: before_switch: failed on 1 of 2 host(s): {web2.url}: exit 1; "
                              "switch:test changed nothing"], res.stderr
            assert "Traceback" not in res.stderr
        told = deploy_env(p, "on_failure.env")
        assert (told["DEPLOY_RESULT"], told["DEPLOY_ERROR"]) == ("failed", errors[0][len("ERROR: "):])
        assert "WARNING: deploy:test: on_failure failed here: exit 3 (the result of deploy:test stands: failed)" \
            in res.stderr.splitlines()    # it failed: reported only
    finally:
        web2.path("/srv/blog/deny-switch").unlink()
    p.ok("deploy:test")
    assert p.links("sites/test") != before


def test_a_failing_after_switch_puts_every_host_back(world):
    p, repo, (web1, web2) = world["project"], world["repo"], world["hosts"]
    before = p.links("sites/test")
    repo.commit("r3", {"static/version.txt": "r3\n"})
    web1.path("/srv/blog/deny-after-switch").write_text("")
    try:
        res = p.doit("deploy:test")
        assert res.returncode == 1, res.stdout + res.stderr
        assert p.links("sites/test") == before       # web2's switch went fine, and went back too
        assert f"ERROR: switch:test: {web1.url}: after_switch failed: exit 1; every host of test is back on its " \
            "previous release" in res.stderr.splitlines(), res.stderr
        new = next(r for r in p.log(web2) if r["result"] == "failed")["release"]
        assert rid_of(before[0]) != new and [r["result"] for r in p.log(web2) if r["release"] == new] == ["failed"]
    finally:
        web1.path("/srv/blog/deny-after-switch").unlink()
    p.ok("deploy:test")
    assert p.links("sites/test") == [f"../releases/{new}"] * 2


def test_a_failing_after_build_runs_again_on_the_rerun(world):
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    before = p.links("sites/test")
    repo.commit("r4", {"static/version.txt": "r4\n"})
    hosts[0].path("/srv/blog/deny-build").write_text("")
    try:
        res = p.doit("deploy:test")
        assert res.returncode == 1 and f"ERROR: build:test: after_build: failed on 1 of 2 host(s): {hosts[0].url}: " \
            "exit 1" in res.stderr.splitlines(), res.stderr
        assert p.links("sites/test") == before
    finally:
        hosts[0].path("/srv/blog/deny-build").unlink()
    counts = [hook_log(h).count("after_build") for h in hosts]
    res = p.ok("deploy:test")
    assert ".  build:test" in res.stdout.splitlines()
    assert [hook_log(h).count("after_build") for h in hosts] == [c + 1 for c in counts]
    assert p.links("sites/test") != before
