"""A switch is done only when its last effect is recorded (invariant 7): the deployer killed at a failpoint
between the rename and the release log leaves an intent on the hosts; the next run finishes that switch
(reload, health, log) or undoes it, and says which. SIGTERM during a switch finishes or undoes it on every
host before the run stops. Real sshd hosts, real MariaDB or PostgreSQL (engine_world); the failpoints are
armed through DEPLOY_FAILPOINTS (tasks/failpoints.py).

A switch touches no database: on PostgreSQL one kill point only (the switch finished with the release's
PostgreSQL env live), the others on MySQL only, to keep the suite's time. A deployer killed during
production's migration, where the engine matters: tests/integration/test_migration_record.py, on both."""
from __future__ import annotations

import signal

import pytest

from doit_stages import failpoints
from tests.integration.engines import only_on
from tests.lab.deployer import end, go_on, start_doit, wait_paused

RELOAD = "reload_command = sh -c 'echo \"$STAGE $PWD\" >> /srv/blog/shared/reloads-$STAGE'\n"


NEUTRAL = "a switch touches no database: the same on every engine"
POINTS = ["switch.after_rename", "switch.after_reload", "switch.before_log", "switch.after_log"]


@pytest.fixture(scope="module")
def world(engine_world):
    p = engine_world["project"]
    p.write(prod_stage_extra=RELOAD, test_hosts=", ".join(h.url for h in engine_world["hosts"]))
    for cmd in ("deploy:test", "promote:staging", "promote:prod"):
        p.ok(cmd)
    return engine_world


def rid(link):
    return link.rsplit("/", 1)[1] if link else None


def intents(world, stage):
    return [h.path(f"/srv/blog/.deploy/intent-{stage}.json").exists() for h in world["hosts"]]


def reloads(host, stage="prod"):
    p = host.path(f"/srv/blog/shared/reloads-{stage}")
    return p.read_text().splitlines() if p.exists() else []


def new_release_on_staging(world, tag):
    p = world["project"]
    world["repo"].commit(tag, {"static/version.txt": tag + "\n"})
    p.ok("deploy:test")
    p.ok("promote:staging")
    return rid(p.links("sites/staging")[0])


# MySQL's world only: a switch touches no database, so a kill during one is the same on every engine (the
# killed migrations of both engines: test_migration_record.py)
@pytest.mark.parametrize("engine, point", [("mysql", p) for p in POINTS], indirect=["engine"], scope="module")
def test_killed_during_a_switch_the_next_run_finishes_it(world, point):
    p, hosts = world["project"], world["hosts"]
    new = new_release_on_staging(world, point)
    old = rid(p.links("sites/current")[0])
    res = p.doit("promote:prod", env={"DEPLOY_FAILPOINTS": f"{point}=kill"})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert any(intents(world, "prod")), "the dead run left no intent"
    status = p.ok("status").stdout
    assert "HALF-DONE switch to " + new in status, status
    counts = [len(reloads(h)) for h in hosts]
    res = p.ok("promote:prod")
    assert f"finished the half-done switch to {new}" in res.stdout, res.stdout
    assert [rid(x) for x in p.links("sites/current")] == [new, new]
    assert not any(intents(world, "prod"))
    for h, before in zip(hosts, counts):
        assert len(reloads(h)) > before and reloads(h)[-1] == f"prod /srv/blog/releases/{new}"
        last = [r for r in p.log(h) if r["stage"] == "prod"][-1]
        assert (last["release"], last["result"], last["previous"]) == (new, "ok", old)
    row = next(ln for ln in p.ok("status").stdout.splitlines() if ln.startswith("prod "))
    assert new in row and "2/2 agree" in row and "HALF-DONE" not in row


@only_on("mysql", NEUTRAL)
def test_a_half_done_switch_to_another_release_is_undone(world):
    p, hosts = world["project"], world["hosts"]
    before = p.links("sites/test")
    world["repo"].commit("abandoned", {"static/version.txt": "abandoned\n"})
    res = p.doit("deploy:test", env={"DEPLOY_FAILPOINTS": "switch.after_rename=kill"})
    assert res.returncode == -signal.SIGKILL
    abandoned = rid(next(x for x in p.links("sites/test") if x not in before))
    world["repo"].commit("wanted", {"static/version.txt": "wanted\n"})
    res = p.ok("deploy:test")
    assert f"undid the half-done switch to {abandoned}" in res.stdout, res.stdout
    links = p.links("sites/test")
    assert len(set(links)) == 1 and rid(links[0]) not in (abandoned, rid(before[0]))
    for h in hosts:
        assert {"release": abandoned, "result": "failed"}.items() <= \
            [r for r in p.log(h) if r["release"] == abandoned][-1].items()
    assert not any(intents(world, "test"))


@only_on("mysql", NEUTRAL)
def test_sigterm_during_a_switch_undoes_the_batches_done(world):
    p, hosts = world["project"], world["hosts"]
    new_release_on_staging(world, "sigterm")
    before = p.links("sites/current")
    p.write(prod_stage_extra=RELOAD + "batch = 1\n")
    # held inside the first batch (web1 reloaded, web2 not yet switched); SIGTERM arrives there
    proc = start_doit(p, "promote:prod", env={failpoints.ENV: f"switch.after_reload=pause@{hosts[0].url}"})
    try:
        assert wait_paused(proc), "the run never reached the first batch's reload"
        links = p.links("sites/current")
        assert links[0] != before[0] and links[1] == before[1], (before, links)    # web1 switched, web2 not yet
        proc.send_signal(signal.SIGTERM)     # pending while it is stopped: taken as soon as it goes on
        go_on(proc)
        out, err = proc.communicate(timeout=120)
    finally:
        end(proc)
        p.write(prod_stage_extra=RELOAD)
    assert proc.returncode != 0 and "interrupted" in err and "put back" in err, err
    assert p.links("sites/current") == before
    assert not any(intents(world, "prod"))
    assert not any(h.path("/srv/blog/.deploy/lock").exists() for h in hosts)


@only_on("mysql", NEUTRAL)
def test_killed_after_a_one_host_switchs_reload_the_next_run_finishes_it(world):
    """A stage of one host sends its intent, its rename and its reload in one exchange: the deployer killed
    after it (before the release log) leaves the intent; the next run reloads again, logs, removes it."""
    p, (web1, web2) = world["project"], world["hosts"]
    p.write(hosts=web1.url)
    try:
        new = new_release_on_staging(world, "one host")
        old = rid(p.link(web1, "sites/current"))
        other = p.link(web2, "sites/current")
        res = p.doit("promote:prod", env={"DEPLOY_FAILPOINTS": "switch.after_reload=kill"})
        assert res.returncode == -signal.SIGKILL, res.stderr
        assert intents(world, "prod") == [True, False]
        assert rid(p.link(web1, "sites/current")) == new and reloads(web1)[-1] == f"prod /srv/blog/releases/{new}"
        assert not [r for r in p.log(web1) if r["stage"] == "prod" and r["release"] == new]   # not logged yet
        count = len(reloads(web1))
        res = p.ok("promote:prod")
        assert f"finished the half-done switch to {new}" in res.stdout, res.stdout
        assert rid(p.link(web1, "sites/current")) == new and p.link(web2, "sites/current") == other
        assert len(reloads(web1)) == count + 1 and reloads(web1)[-1] == f"prod /srv/blog/releases/{new}"
        last = [r for r in p.log(web1) if r["stage"] == "prod"][-1]
        assert (last["release"], last["result"], last["previous"]) == (new, "ok", old)
        assert intents(world, "prod") == [False, False]
    finally:
        p.write(hosts=", ".join(h.url for h in world["hosts"]))
