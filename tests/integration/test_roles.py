"""Roles within a stage on three real sshd hosts: `hosts` (web1, web2: role app) and `hosts.worker` (web3),
primary = web2, on the test stage (MariaDB, rehearsed migrations). Each host builds, reloads and runs its
hooks as its role says; the migration rehearsal and `doit run:` run on the primary only; `doit status` names
every host's role; a failing reload_command.worker puts every host of every role back. The tests of this
module run in order on one project."""
from __future__ import annotations

import pytest

from tests.lab.world import open_world

ROOT = "/srv/blog"
# each role's reload_command writes which role reloaded the host (a release holding `deny-worker` fails the
# worker's reload); the worker builds with its own build_command; after_switch.worker runs on workers only
ROLE_LINES = """\
reload_command = sh -c 'echo app > {root}/reloaded-as'
reload_command.worker = sh -c 'test ! -e deny-worker && echo worker > {root}/reloaded-as'
build_command.worker = sh -c 'echo worker > built-as'
after_switch.worker = sh -c 'echo "$PWD" >> {root}/worker-hook.log'
batch = 1
""".format(root=ROOT)


@pytest.fixture(scope="module")
def world(ssh_hosts, mariadb, tmp_path_factory):
    web1, web2, web3 = ssh_hosts["web1"], ssh_hosts["web2"], ssh_hosts.add("web3")
    change = {"stage:test": {"hosts": f"{web1.url}, {web2.url}",
                             "+": f"hosts.worker = {web3.url}\nprimary = {web2.url}\n{ROLE_LINES}"}}
    with open_world(mariadb, ssh_hosts, tmp_path_factory.mktemp("roles"), names=("web1", "web2", "web3"),
                    changes=[change]) as w:
        yield w


def read(host, path: str) -> str | None:
    p = host.path(path)
    return p.read_text() if p.exists() else None


def rid_of(link: str) -> str:
    return link.rsplit("/", 1)[-1]


def test_each_host_builds_and_reloads_as_its_role_and_migrations_run_on_the_primary(world):
    p, (web1, web2, web3) = world["project"], world["hosts"]
    p.ok("deploy:test")
    links = p.links("sites/test")
    rid = rid_of(links[0])
    assert links == [f"../releases/{rid}"] * 3           # one release on every host of every role
    assert [read(h, f"{ROOT}/reloaded-as") for h in (web1, web2, web3)] == ["app\n", "app\n", "worker\n"]
    assert [read(h, f"{ROOT}/releases/{rid}/built-as") for h in (web1, web2, web3)] == [None, None, "worker\n"]
    assert [read(h, f"{ROOT}/worker-hook.log") for h in (web1, web2, web3)] == [
        None, None, f"{ROOT}/releases/{rid}\n"]
    # the rehearsal (test's migrations, on a fresh copy of prod) ran on the primary, web2, only
    assert [h.path(f"{ROOT}/.deploy/rehearsals/{rid}.json").exists() for h in (web1, web2, web3)] == [
        False, True, False]
    # every host got the same env file for the stage
    envs = {read(h, f"{ROOT}/releases/{rid}/.deploy-env/test.env") for h in (web1, web2, web3)}
    assert len(envs) == 1


def test_run_goes_to_the_primary_and_status_names_each_hosts_role(world):
    p, (web1, web2, web3) = world["project"], world["hosts"]
    p.ok("run:test", "sh", "-c", f"echo ran > {ROOT}/ran-here")
    assert [h.path(f"{ROOT}/ran-here").exists() for h in (web1, web2, web3)] == [False, True, False]
    res = p.ok("status")
    assert f"roles: app {web1.url} {web2.url} (primary), worker {web3.url}" in res.stdout, res.stdout


def test_a_failing_worker_reload_puts_every_host_of_every_role_back(world):
    p, repo, (web1, web2, web3) = world["project"], world["repo"], world["hosts"]
    before = p.links("sites/test")
    for h in (web1, web2, web3):
        h.path(f"{ROOT}/reloaded-as").unlink()
    repo.commit("r2", {"deny-worker": "the worker's reload fails in this release\n"})
    res = p.doit("deploy:test")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stdout + res.stderr
    assert p.links("sites/test") == before
    error = next(ln for ln in res.stderr.splitlines() if ln.startswith("ERROR: switch:test"))
    assert web3.url in error and "every host of test is back on its previous release" in error, error
    new = next(r for r in p.log(web1) if r["result"] == "failed")["release"]
    assert [[r["result"] for r in p.log(h) if r["release"] == new] for h in (web1, web2, web3)] == [["failed"]] * 3
