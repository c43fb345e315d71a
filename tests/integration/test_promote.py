"""promote:staging, promote:prod, rollback, status, locks and shared files on two real sshd hosts and a
real MariaDB or PostgreSQL (engine_world), with a real nginx serving sites/current. The tests run in order
on one project. On PostgreSQL only the ones whose run touches the database (the promotions with their
migrations and backups, the switch back, rollback); the engine-neutral ones (status, locks, shared files,
stage dirs) on MySQL only, to keep the suite's time."""
from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request

import pytest

from doit_stages import failpoints
from tests.integration.engines import only_on
from tests.lab.common import free_port
from tests.lab.deployer import end, go_on, start_doit, wait_paused
from tests.lab.project import tree


@pytest.fixture(scope="module")
def world(engine_world):
    return engine_world


def rid(link):
    return link.rsplit("/", 1)[-1] if link else None


NEUTRAL = "no database in it: links, locks, status and files on the hosts are the same on every engine"


def migrations(db, name) -> int:
    return len(db.applied(name))


def test_test_staging_prod_on_two_hosts(world):
    p, db, web1 = world["project"], world["db"], world["hosts"][0]
    p.ok("deploy:test")
    release = rid(p.links("sites/test")[0])
    assert migrations(db, world["prod"]) == 0
    backups_before = {b["name"] for b in p.backups(web1)}
    p.ok("promote:staging")
    migrated = migrations(db, world["prod"])
    assert migrated > 0  # production's schema changed here, and only here
    new = [b for b in p.backups(web1) if b["name"] not in backups_before]
    assert [b["reason"] for b in new] == [f"before migrate:staging {release}", f"after migrate:staging {release}"]
    assert all(b["status"] == "verified" for b in new)
    assert new[0]["tables"] == {} and "django_migrations" in new[1]["tables"]
    for host in world["hosts"]:
        staging = [r for r in p.log(host) if r["stage"] == "staging"]
        assert staging[-1]["backups"] == [b["file"] for b in new] and staging[-1]["release"] == release
    p.ok("promote:prod")
    assert migrations(db, world["prod"]) == migrated
    for link in ("sites/test", "sites/staging", "sites/current"):
        assert [rid(x) for x in p.links(link)] == [release, release]


def test_second_runs_write_nothing(world):
    p = world["project"]
    before = [tree(h.root) for h in world["hosts"]]
    backups = len(p.backups(world["hosts"][0]))
    for cmd in ("promote:staging", "promote:prod"):
        res = p.ok(cmd)
        ran = [ln for ln in res.stdout.splitlines() if ln.startswith(".  ")]
        assert ran == [f".  verify:{cmd.split(':')[1]}"], res.stdout
    assert [tree(h.root) for h in world["hosts"]] == before
    assert len(p.backups(world["hosts"][0])) == backups


@only_on("mysql", NEUTRAL)
def test_status_reports_a_host_that_disagrees(world):
    p, web2 = world["project"], world["hosts"][1]
    out = p.ok("status").stdout
    assert out.count("2/2 agree") == 3, out
    link = web2.path("/srv/blog/sites/current")
    target = os.readlink(link)
    os.unlink(link)
    os.symlink("../releases/blog-2000-01-01-0000-000000000000", link)
    try:
        out = p.ok("status").stdout
        row = next(ln for ln in out.splitlines() if ln.startswith("prod"))
        assert "DISAGREE" in row and web2.url in row and "blog-2000-01-01-0000-000000000000" in row
    finally:
        os.unlink(link)
        os.symlink(target, link)


def test_failed_health_check_switches_every_host_back(world):
    p, repo = world["project"], world["repo"]
    old = p.links("sites/current")
    repo.add_data_migration()
    p.ok("deploy:test")
    p.ok("promote:staging")
    new = rid(p.links("sites/staging")[0])
    dead = free_port()
    p.write(prod_stage_extra=f"health_url = http://{{host}}:{dead}/health/\nhealth_timeout = 2s\n")
    try:
        res = p.doit("promote:prod")
    finally:
        p.write(prod_stage_extra="")
    assert res.returncode != 0 and "health check failed" in res.stderr, res.stderr
    assert p.links("sites/current") == old
    for host in world["hosts"]:
        last = p.log(host)[-1]
        assert (last["stage"], last["release"], last["result"]) == ("prod", new, "failed")


@only_on("mysql", NEUTRAL)
def test_a_health_url_whose_name_does_not_resolve_fails_at_once(world):
    p = world["project"]
    old = p.links("sites/current")
    url = "http://no-such-host.invalid:8000/health/"
    p.write(prod_stage_extra=f"health_url = {url}\nhealth_timeout = 10m\n")
    started = time.monotonic()
    try:
        res = p.doit("promote:prod")
    finally:
        p.write(prod_stage_extra="")
    assert res.returncode != 0 and time.monotonic() - started < 300, res.stderr   # not 10 minutes of retries
    line = next(ln for ln in res.stderr.splitlines() if "does not resolve" in ln)
    assert "switch:prod" in line and url in line and any(h.url in line for h in world["hosts"]), line
    assert p.links("sites/current") == old


def test_switching_under_load_fails_no_request(world, nginx_on):
    """nginx serves sites/current/static; promote:prod and rollback:prod flip it again and again."""
    p = world["project"]
    servers = [nginx_on(h) for h in world["hosts"]]
    seen, failures, count, stop = set(), [], [0], threading.Event()

    def load(url):
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url + "/version.txt", timeout=5) as r:
                    body = r.read().decode().strip()
                    seen.add(body)
                    if r.status != 200:
                        failures.append(r.status)
            except (urllib.error.URLError, OSError) as exc:
                failures.append(str(exc))
            count[0] += 1
            stop.wait(0.005)   # ~150 requests a second a thread: every switch is crossed, no core is burnt
    threads = [threading.Thread(target=load, args=(s.url,)) for s in servers for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            p.ok("promote:prod")
            p.ok("rollback:prod")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and count[0] > 200, (failures[:5], count[0])
    assert seen == {"r1", "r2"}
    log = p.log(world["hosts"][0])
    assert [r["result"] for r in log if r["stage"] == "prod"][-2:] == ["rollback", "bad"]


@only_on("mysql", NEUTRAL)
def test_a_missing_shared_file_stops_the_promotion_before_anything_changes(world):
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    p.ok("promote:prod")  # back on r2, for a clean start
    repo.commit("r5", {"static/version.txt": "r5\n"})
    p.ok("deploy:test")
    staging_before = p.links("sites/staging")
    before = [tree(h.root) for h in hosts]
    p.write(project_extra="shared_files = local_settings.py\n")
    try:
        res = p.doit("promote:staging")
        assert res.returncode != 0, res.stderr
        line = next(ln for ln in res.stderr.splitlines() if "local_settings.py" in ln)
        assert ":staging: shared file /srv/blog/shared/local_settings.py is missing on " in line, line
        assert all(h.url in line for h in hosts) and "nothing was changed" in line, line
        assert [tree(h.root) for h in hosts] == before       # no lock taken, nothing unpacked or built
        assert p.links("sites/staging") == staging_before
        for h in hosts:
            h.run(["sh", "-c", "echo 'X = 1' > /srv/blog/shared/local_settings.py"])
        p.ok("promote:staging")
    finally:
        p.write(project_extra="")
    new = rid(p.links("sites/test")[0])
    assert [rid(x) for x in p.links("sites/staging")] == [new, new]
    for h in hosts:
        linked = h.path(f"/srv/blog/releases/{new}/local_settings.py")
        assert linked.is_symlink() and linked.read_text() == "X = 1\n"


@only_on("mysql", NEUTRAL)
def test_a_second_run_is_refused_with_the_holders_name(world):
    p, web2 = world["project"], world["hosts"][1]
    web2.run(["sh", "-c", "mkdir -p /srv/blog/.deploy/lock && echo '{\"user\": \"alice\", \"machine\": "
                          "\"laptop\", \"pid\": 1, \"what\": \"promote:prod\", \"time\": \"now\", \"token\": \"x\"}'"
                          " > /srv/blog/.deploy/lock/owner.json"])
    before = [tree(h.root) for h in world["hosts"]]
    world["repo"].commit("r6", {"static/version.txt": "r6\n"})
    res = p.doit("deploy:test")
    assert res.returncode != 0 and "alice@laptop" in res.stderr, res.stderr
    after = [tree(h.root) for h in world["hosts"]]
    assert after[1] == before[1]
    res = p.ok("unlock:test")
    assert "alice@laptop" in res.stdout
    assert not web2.path("/srv/blog/.deploy/lock").exists()
    p.ok("deploy:test")


def stage_dir(host, stage: str) -> str:
    """STAGE_DIR in the env the stage's live release runs with there (shared/<stage>.env, through the link)."""
    env = host.path(f"/srv/blog/shared/{stage}.env").read_text()
    return next(ln.split("=", 1)[1] for ln in env.splitlines() if ln.startswith("STAGE_DIR="))


def contents(top) -> dict:
    """Every path under top: its bytes (a file), its target (a link) or None (a directory)."""
    return {str(x.relative_to(top)): os.readlink(x) if x.is_symlink() else None if x.is_dir() else x.read_bytes()
            for x in sorted(top.rglob("*"))}


@only_on("mysql", NEUTRAL)
def test_a_promotion_builds_its_own_stage_dirs_and_the_live_ones_stay_until_the_switch(world):
    """stage_dirs and STAGE_DIR (collectstatic's output here): held after the build, before the switch
    (switch.after_intent), the live release's are byte for byte as they were; the switch moves STAGE_DIR to
    the new release's; a rollback returns to the old ones, files and all."""
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    p.ok("promote:staging")
    old = rid(p.links("sites/staging")[0])
    live = f"/srv/blog/shared/staging/{old}"
    for h in hosts:
        assert stage_dir(h, "staging") == live
        h.run(["sh", "-c", f"echo 'written by the live app' > {live}/cache/marker.txt"])
    before = [(tree(h.path(live)), contents(h.path(live))) for h in hosts]
    assert all("static/posts/site.css" in c for _, c in before)
    repo.commit("r7", {"static/version.txt": "r7\n"})
    p.ok("deploy:test")
    new = rid(p.links("sites/test")[0])
    proc = start_doit(p, "promote:staging", env={failpoints.ENV: "switch.after_intent=pause"})
    try:
        assert wait_paused(proc), "the promotion never reached its switch"
        assert [(tree(h.path(live)), contents(h.path(live))) for h in hosts] == before
        for h in hosts:
            assert stage_dir(h, "staging") == live
            built = contents(h.path(f"/srv/blog/shared/staging/{new}"))
            assert "static/posts/site.css" in built and "cache" in built and "cache/marker.txt" not in built
        go_on(proc)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    finally:
        end(proc)
    for h in hosts:
        assert stage_dir(h, "staging") == f"/srv/blog/shared/staging/{new}"
        assert contents(h.path(live)) == before[hosts.index(h)][1]      # kept: rollback may return to it
    p.ok("rollback:staging")
    for h, (_, files) in zip(hosts, before):
        assert stage_dir(h, "staging") == live and contents(h.path(live)) == files
        # and no generation is left whose release is gone
        gens = {x.name for x in h.path("/srv/blog/shared/staging").iterdir() if x.name.startswith("blog-")}
        assert gens <= {x.name for x in h.path("/srv/blog/releases").iterdir()}
