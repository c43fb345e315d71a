"""A switch that is undone says the truth and leaves nothing behind: a failed FIRST deploy (no release to go
back to) keeps what it built for the rerun and leaves no dangling shared/<stage>.env; a reload that never
returns fails at its reload_timeout, its processes ended on the host, every host back on its previous
release; a second Ctrl-C stops that wait at once, the same way. Real sshd hosts, real MariaDB."""
from __future__ import annotations

import os
import queue
import secrets
import signal
import threading
import time

import pytest

from tests.lab.deployer import end, start_doit

ROOT = "/srv/blog"
# deploy:test's nodes before its switch (each node of a chain runs alone when named: no task_dep between them)
UP_TO_THE_SWITCH = ("archive", "backup:prod", "upload:test", "build:test", "restore:test", "migrate:test")


@pytest.fixture(scope="module")
def world(blog_world):
    return blog_world


def rid(link):
    return link.rsplit("/", 1)[1] if link else None


def sleeping(host, marker: str) -> list[str]:
    """The processes on the host whose command line is `sleep <marker>` (what a hung reload left)."""
    out = host.run(["ps", "-eo", "pid=,args="], user=None, check=True).stdout
    return [line for line in out.splitlines() if line.split()[1:] == ["sleep", marker]]


def hanging_reload(marker: str, fifo: str = "") -> str:
    """A reload_command that never returns in a release holding the file `hang` (and returns at once in
    any other: the put-back's reload of the previous release works); with fifo, it first says `started`
    into that FIFO on the host, which the test reads: the test's signal that the reload runs."""
    say = f"echo started > {fifo}; " if fifo else ""
    return f"reload_command = sh -c 'if [ -e hang ]; then {say}exec sleep {marker}; fi'\n"


def test_a_failed_first_deploy_says_so_keeps_its_build_and_leaves_no_dangling_link(world):
    p, hosts = world["project"], world["hosts"]
    assert p.links("sites/test") == [None, None]
    p.write(project_extra="health_url = http://127.0.0.1:9/nothing-listens\nhealth_timeout = 1s\n")
    res = p.doit("deploy:test")
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert "health check failed" in res.stderr, res.stderr
    assert "previous release" not in res.stderr, res.stderr
    assert "test had no release before: its link sites/test was removed on every host, so the stage has no live " \
           "release" in res.stderr, res.stderr
    assert p.links("sites/test") == [None, None]
    release = p.log(hosts[0])[-1]["release"]
    kept = {}
    for h in hosts:
        assert p.log(h)[-1]["result"] == "failed" and p.log(h)[-1]["release"] == release
        rel, artifact = h.path(f"{ROOT}/releases/{release}"), h.path(f"{ROOT}/.deploy/artifacts/{release}.tar.gz")
        assert (rel / ".deploy-ready").is_file() and (rel / ".venv" / "bin" / "python").exists()
        assert artifact.is_file()
        env = h.path(f"{ROOT}/shared/test.env")
        assert not env.exists() and not env.is_symlink(), f"{h}: shared/test.env left: -> {os.readlink(env)}"
        assert not h.path(f"{ROOT}/.deploy/intent-test.json").exists()
        kept[h] = (rel.stat().st_ino, artifact.stat().st_ino, (rel / ".venv").resolve().stat().st_ino)

    p.write(project_extra="")
    p.ok("deploy:test")
    assert [rid(x) for x in p.links("sites/test")] == [release, release]
    for h in hosts:   # the same release dir, archive and venv: reused, not made again
        rel, artifact = h.path(f"{ROOT}/releases/{release}"), h.path(f"{ROOT}/.deploy/artifacts/{release}.tar.gz")
        assert kept[h] == (rel.stat().st_ino, artifact.stat().st_ino, (rel / ".venv").resolve().stat().st_ino)
        env = h.path(f"{ROOT}/shared/test.env")
        assert env.is_symlink() and env.is_file(), f"{h}: shared/test.env does not lead to the live env file"


@pytest.fixture(params=[2, 1], ids=["two hosts", "one host"])
def test_hosts(request, world):
    """The hosts of stage test: both, or the first only (a stage of one host sends its reload in the same
    exchange as its intent and its rename)."""
    p, hosts = world["project"], world["hosts"][:request.param]
    p.write(test_hosts=", ".join(h.url for h in hosts))
    yield hosts
    p.write(test_hosts=", ".join(h.url for h in world["hosts"]))


def test_a_reload_that_never_returns_fails_at_its_timeout_and_every_host_goes_back(world, test_hosts):
    p, hosts = world["project"], test_hosts
    before = p.links("sites/test")
    assert None not in before
    marker = str(100000 + secrets.randbelow(800000))
    world["repo"].commit(f"hangs on reload {marker}", {"hang": f"the reload of this release never returns {marker}\n"})
    p.write(project_extra=hanging_reload(marker) + "reload_timeout = 2s\n")
    try:
        p.ok(*UP_TO_THE_SWITCH)               # so that the switch is what is timed
        t0 = time.monotonic()
        p.ok("migrate:test")                  # a node's check, up to date: a run's own cost
        overhead = time.monotonic() - t0
        t0 = time.monotonic()
        res = p.doit("switch:test")
        took = time.monotonic() - t0
    finally:
        p.write(project_extra="")
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    for h in hosts:
        assert f"{h.url}: reload (sh -c 'if [ -e hang ]; then exec sleep {marker}; fi') did not finish within 2s " \
               "(reload_timeout); its processes there were ended" in res.stderr, res.stderr
    assert "every host of test is back on its previous release" in res.stderr, res.stderr
    assert took - overhead < 2 + 10, (took, overhead)
    assert p.links("sites/test") == before
    for h in hosts:
        assert sleeping(h, marker) == [], f"{h}: the reload still runs"
        assert not h.path(f"{ROOT}/.deploy/intent-test.json").exists()
        assert p.log(h)[-1]["result"] == "failed"


def test_a_second_ctrl_c_stops_waiting_on_the_reload_and_every_host_goes_back(world, test_hosts):
    p, hosts = world["project"], test_hosts
    before = p.links("sites/test")
    marker = str(100000 + secrets.randbelow(800000))
    fifo = f"{ROOT}/shared/reload-started"
    for h in hosts:
        os.mkfifo(h.path(fifo))
        os.chmod(h.path(fifo), 0o666)
    command = f"sh -c 'if [ -e hang ]; then echo started > {fifo}; exec sleep {marker}; fi'"
    p.write(project_extra=hanging_reload(marker, fifo) + "reload_timeout = 10m\n")
    p.ok(*UP_TO_THE_SWITCH)      # the release that hangs, ready on these hosts
    started = queue.Queue()

    def read(h):   # blocks until the reload on h opens the FIFO to say it started: an event, not a poll
        with open(h.path(fifo)) as f:
            started.put((h, f.read().strip()))
    readers = [threading.Thread(target=read, args=(h,), daemon=True) for h in hosts]
    for th in readers:
        th.start()
    proc = start_doit(p, "switch:test")
    lines = queue.Queue()
    err: list[str] = []

    def pump():
        for line in proc.stderr:
            err.append(line)
            lines.put(line)
    threading.Thread(target=pump, daemon=True).start()
    try:
        for _ in hosts:
            h, said = started.get(timeout=300)
            assert said == "started", (h, said)
        proc.send_signal(signal.SIGINT)
        first = next(line for line in iter(lambda: lines.get(timeout=120), None) if "interrupted" in line)
        proc.send_signal(signal.SIGINT)       # once the first was taken: two never merge into one
        proc.wait(timeout=120)
        out = proc.stdout.read()
    finally:
        end(proc)
        p.write(project_extra="")
        for h in hosts:
            h.path(fifo).unlink()
    stderr = "".join(err)
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr + out
    named = first.partition("switch:test: interrupted; waiting on ")[2].partition(f": reload ({command}) for ")[0]
    assert sorted(named.split(", ")) == sorted(h.url for h in hosts), first   # both hosts, in the order they began
    assert "Ctrl-C again stops waiting on a reload" in first and first.count("\n") == 1, first
    assert "switch:test: stopped waiting on " in stderr, stderr
    for h in hosts:
        assert f"{h.url}: reload ({command}) stopped by a second Ctrl-C; its processes there were ended" in stderr
    assert "every host of test is back on its previous release" in stderr, stderr
    assert p.links("sites/test") == before
    for h in hosts:
        assert sleeping(h, marker) == [], f"{h}: the reload still runs"
        assert not h.path(f"{ROOT}/.deploy/intent-test.json").exists()
        assert p.log(h)[-1]["result"] == "failed"
    assert not any(h.path(f"{ROOT}/.deploy/lock").exists() for h in hosts)
