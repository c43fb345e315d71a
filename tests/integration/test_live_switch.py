"""A live switch is never ended, nor misreported, by a second run (issue #16, item 1). promote:prod sits in a
reload_command that waits on a file the test controls (hold-prod on each host); meanwhile a second checkout
runs `doit unlock:prod` (refused: the holder is alive on this machine; --force removes the lock and ends the
run's work), `doit status` (the switch is under way, not "its run died"), or a host's sessions are killed.
The run then says what is true per host, keeps its intent where the switch is not settled, and the next run
finishes it: reload, health check, release-log record. Real sshd hosts, real MariaDB, the real blog app."""
from __future__ import annotations

import copy
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.deployer import start_doit
from tests.lab.health import HealthServer
from tests.lab.stages_ini import stages_ini

# the reload: says it started, waits while the test holds it, then records what it reloaded
RELOAD = ("reload_command = sh -c 'touch /srv/blog/shared/reloading-$STAGE; "
          "while [ -e /srv/blog/shared/hold-$STAGE ]; do sleep 0.05; done; "
          "echo \"$STAGE $PWD\" >> /srv/blog/shared/reloads-$STAGE'\n")


@pytest.fixture(scope="module")
def world(blog_world, tmp_path_factory):
    p = blog_world["project"]
    health = HealthServer()
    p.template = stages_ini({"project": {"build_command": None}})
    p.write(prod_stage_extra=RELOAD + f"health_url = http://{{host}}:{health.port}/health/\nhealth_timeout = 10s\n")
    for cmd in ("deploy:test", "promote:staging", "promote:prod"):
        p.ok(cmd)
    second = copy.copy(p)            # a second checkout: its own directory (no shared flock), the same hosts
    second.workdir = tmp_path_factory.mktemp("second")
    second.ini = second.workdir / "stages.ini"
    second.ini.write_text(p.ini.read_text())
    yield {**blog_world, "health": health, "second": second}
    health.stop()


def rid(link):
    return link.rsplit("/", 1)[-1] if link else None


def reloads(host) -> list[str]:
    f = host.path("/srv/blog/shared/reloads-prod")
    return [ln.rsplit("/", 1)[-1] for ln in f.read_text().splitlines()] if f.exists() else []


def intent(host):
    return host.path("/srv/blog/.deploy/intent-prod.json").exists()


def wait_for(cond, timeout: float = 300.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def new_release_on_staging(world, tag: str) -> tuple[str, str]:
    p = world["project"]
    world["repo"].commit(tag, {"static/version.txt": tag + "\n"})
    p.ok("deploy:test")
    p.ok("promote:staging")
    return rid(p.links("sites/current")[0]), rid(p.links("sites/staging")[0])


class HeldPromotion:
    """promote:prod started with every host's reload held (on hold-prod, until `release`); `wait_reloading`
    returns once each host is in its reload: a state that lasts while the hold does."""

    def __init__(self, world):
        self.p, self.hosts = world["project"], world["hosts"]
        for h in self.hosts:
            h.path("/srv/blog/shared/reloading-prod").unlink(missing_ok=True)
            h.write_file("/srv/blog/shared/hold-prod", "")
        self.proc = start_doit(self.p, "promote:prod")

    def wait_reloading(self) -> None:
        assert wait_for(lambda: self.proc.poll() is not None or all(
            h.path("/srv/blog/shared/reloading-prod").exists() for h in self.hosts)), "no reload started"
        assert self.proc.poll() is None, self.proc.communicate()

    def release(self) -> subprocess.CompletedProcess:
        for h in self.hosts:
            h.path("/srv/blog/shared/hold-prod").unlink(missing_ok=True)
        out, err = self.proc.communicate(timeout=300)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.release() if not exc[0] else self.proc.kill()
            self.proc.communicate()
        for h in self.hosts:
            h.path("/srv/blog/shared/hold-prod").unlink(missing_ok=True)


def test_unlock_and_status_during_a_live_reload_leave_the_run_alone(world):
    p, second, hosts, health = world["project"], world["second"], world["hosts"], world["health"]
    old, new = new_release_on_staging(world, "refused")
    with HeldPromotion(world) as run:
        run.wait_reloading()
        owners = [h.path("/srv/blog/.deploy/lock/owner.json").read_text() for h in hosts]
        status = second.doit("status")
        row = next(ln for ln in status.stdout.splitlines() if ln.startswith("prod "))
        assert "died" not in row and f"pid {run.proc.pid}" in row and "under way" in row, status.stdout
        res = second.doit("unlock:prod")
        assert res.returncode != 0 and f"pid {run.proc.pid}" in res.stderr and "--force" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert [h.path("/srv/blog/.deploy/lock/owner.json").read_text() for h in hosts] == owners
        assert run.proc.poll() is None, "the unlock ended the run"
        t0 = time.time()
        done = run.release()
    assert done.returncode == 0, done.stderr
    assert [rid(x) for x in p.links("sites/current")] == [new, new]
    for h in hosts:
        assert reloads(h)[-1] == new and not intent(h)
        last = [r for r in p.log(h) if r["stage"] == "prod"][-1]
        assert (last["release"], last["result"], last["previous"]) == (new, "ok", old)
    assert health.since(t0) >= len(hosts)


def test_a_forced_unlock_leaves_the_truth_and_the_next_run_finishes_the_switch(world):
    p, second, hosts, health = world["project"], world["second"], world["hosts"], world["health"]
    old, new = new_release_on_staging(world, "forced")
    counts = [len(reloads(h)) for h in hosts]
    with HeldPromotion(world) as run:
        run.wait_reloading()
        res = second.doit("unlock:prod", "--force")
        assert res.returncode == 0 and f"pid {run.proc.pid}" in res.stdout, res.stdout + res.stderr
        assert not any(h.path("/srv/blog/.deploy/lock").exists() for h in hosts)
        done = run.release()
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    links = [rid(x) for x in p.links("sites/current")]
    assert links == [new, new]                     # the reloads were ended after the rename: both run `new`
    assert "back on its previous release" not in done.stderr, done.stderr
    for h in hosts:
        assert f"{h.url.split('@')[1]} runs {new}" in done.stderr, done.stderr
        assert intent(h), "the switch is not settled: its intent must stay"
        assert len(reloads(h)) == counts[hosts.index(h)]   # no reload finished
    row = next(ln for ln in p.ok("status").stdout.splitlines() if ln.startswith("prod "))
    assert f"HALF-DONE switch to {new}" in row, row
    t0 = time.time()
    res = p.ok("promote:prod")
    assert f"finished the half-done switch to {new}" in res.stdout, res.stdout
    assert [rid(x) for x in p.links("sites/current")] == [new, new]
    for h in hosts:
        assert reloads(h)[-1] == new and not intent(h)
        last = [r for r in p.log(h) if r["stage"] == "prod"][-1]
        assert (last["release"], last["result"], last["previous"]) == (new, "ok", old)
    assert health.since(t0) >= len(hosts)


def test_a_hosts_sessions_killed_during_the_reload(world):
    """web2's sessions die while its reload runs: its put-back goes through a new connection, and the run
    says what is true; no host is left on the new release under a sentence saying it went back."""
    p, hosts = world["project"], world["hosts"]
    old, new = new_release_on_staging(world, "sessions")
    web2 = hosts[1]
    with HeldPromotion(world) as run:
        run.wait_reloading()
        web2.kill_sessions()
        done = run.release()
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    links = [rid(x) for x in p.links("sites/current")]
    if "every host of prod is back on its previous release" in done.stderr:
        assert links == [old, old], (links, done.stderr)
        for h in hosts:
            assert reloads(h)[-1] == old and not intent(h)
            last = [r for r in p.log(h) if r["stage"] == "prod"][-1]
            assert (last["release"], last["result"]) == (new, "failed")
    else:
        for h, link in zip(hosts, links):
            assert f"{h.url.split('@')[1]} runs {link}" in done.stderr or link == old, done.stderr
            assert link == old or intent(h)
    res = p.ok("promote:prod")
    assert [rid(x) for x in p.links("sites/current")] == [new, new], res.stdout
    for h in hosts:
        assert reloads(h)[-1] == new and not intent(h)
        last = [r for r in p.log(h) if r["stage"] == "prod"][-1]
        assert (last["release"], last["result"]) == (new, "ok")


def test_a_lock_from_another_machine_is_stale_only_without_a_live_session(world, tmp_path):
    """Its pid cannot be checked from here: while a session it recorded is alive on a host, unlock refuses
    (unless --force); once none is, the lock is stale and unlock removes it."""
    p, hosts = world["project"], world["hosts"]
    web2 = hosts[1]
    sleeper = subprocess.Popen(["nsenter", "-t", str(web2.pid), "-m", "--", "sleep", "600"])
    try:
        stat = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        web2.write_file("/srv/blog/.deploy/lock/owner.json",
                        '{"user": "ci", "machine": "runner-7", "pid": 1, "what": "doit promote:prod", '
                        '"time": "now", "token": "feed"}')
        web2.write_file("/srv/blog/.deploy/lock/sessions", f"{sleeper.pid} {stat[19]} {boot}\n")
        res = p.doit("unlock:prod")
        assert res.returncode != 0 and "ci@runner-7" in res.stderr and "--force" in res.stderr, res.stderr
        assert web2.path("/srv/blog/.deploy/lock/owner.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    res = p.ok("unlock:prod")
    assert "ci@runner-7" in res.stdout and not web2.path("/srv/blog/.deploy/lock").exists(), res.stdout
