"""Failures and interruptions (invariants 1, 4, 5, 6): a host down, the deployer killed, two runs at once,
a promotion of an unverified release; plus reload_command and a passing health check. On MySQL and on
PostgreSQL (engine_world): the engine-neutral tests (hosts, locks, verify, reloads) run on MySQL only, to keep
the suite's time; on PostgreSQL run the ones whose promise touches the database (promotion, its migration)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

from doit_stages import failpoints
from tests.integration.engines import only_on
from tests.lab.common import NASTY_PASSWORD
from tests.lab.deployer import end, go_on, start_doit, wait_paused
from tests.lab.project import DOIT, PASSWORD_ENV


@pytest.fixture(scope="module")
def world(engine_world):
    return engine_world


NEUTRAL = "no database in it: hosts, links, locks and verify are the same on every engine"


def test_promotion_of_nothing_is_refused(world):
    p = world["project"]
    res = p.doit("promote:staging")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "stage test has no release" in res.stderr and "deploy" in res.stderr, res.stderr
    assert p.links("sites/staging") == [None, None]


def test_promotion_of_a_release_that_failed_verify_is_refused(world):
    p, web2 = world["project"], world["hosts"][1]
    p.ok("deploy:test")
    env = web2.path("/srv/blog/shared/test.env")
    os.chmod(env, 0o644)  # verify checks the env file is private
    try:
        res = p.doit("verify:test")
        assert res.returncode != 0 and "verify:test" in res.stderr
        res = p.doit("promote:staging")
        assert res.returncode != 0 and "has not passed verify:test" in res.stderr, res.stderr
        assert p.links("sites/staging") == [None, None]
    finally:
        os.chmod(env, 0o600)
    p.ok("verify:test")
    p.ok("promote:staging")


@only_on("mysql", NEUTRAL)
def test_one_run_verifies_two_stages_and_names_every_failed_host(world):
    """verify runs pytest inside the doit process, over the run's own sessions: two stages in one run are
    each checked on every host, and a check failing on both hosts names both."""
    p, hosts = world["project"], world["hosts"]
    envs = [h.path("/srv/blog/shared/staging.env") for h in hosts]
    for env in envs:
        os.chmod(env, 0o644)
    try:
        res = p.doit("verify:test", "verify:staging")
    finally:
        for env in envs:
            os.chmod(env, 0o600)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert "passed" in res.stdout and "verify:staging" in res.stderr, res.stdout + res.stderr
    for h in hosts:
        assert f"test_env_file_is_private[{h.url}]" in res.stderr, res.stderr
        assert '"ok": true' in h.path("/srv/blog/.deploy/verified-test").read_text()
        assert '"ok": false' in h.path("/srv/blog/.deploy/verified-staging").read_text()
    p.ok("verify:test", "verify:staging")
    for h in hosts:
        assert '"ok": true' in h.path("/srv/blog/.deploy/verified-staging").read_text()


@only_on("mysql", NEUTRAL)
def test_one_host_down_means_no_host_switches(world):
    p, repo, web2 = world["project"], world["repo"], world["hosts"][1]
    before = p.links("sites/test")
    repo.commit("r2", {"static/version.txt": "r2\n"})
    web2.kill()
    try:
        res = p.doit("deploy:test")
        status = p.doit("status").stdout
    finally:
        web2.start()
    assert res.returncode != 0 and web2.url.split("@")[1] in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and f"{web2.url}: {web2.url}" not in res.stderr, res.stderr
    row = next(ln for ln in status.splitlines() if ln.startswith("test "))
    assert f"host {web2.url} of stage test is unreachable: ssh: " in row and " has " not in row, status
    assert p.links("sites/test") == before
    p.ok("deploy:test")  # the host is back: the run goes on from where it stopped
    assert p.links("sites/test")[0] != before[0] and len(set(p.links("sites/test"))) == 1


@only_on("mysql", NEUTRAL)
def test_killed_deployer_leaves_links_and_next_run_goes_on(world):
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    before = p.links("sites/test")
    releases = {h.name: set(h.path("/srv/blog/releases").iterdir()) for h in hosts}
    repo.commit("r3", {"static/version.txt": "r3\n"})
    # killed while it builds: held right after a host unpacked the new release, before its build for the stage
    proc = start_doit(p, "deploy:test", env={failpoints.ENV: "build.after_unpack=pause"},
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_paused(proc), "the build never started"
        new = [d for h in hosts for d in set(h.path("/srv/blog/releases").iterdir()) - releases[h.name]]
        built = [m.read_text().strip() for m in (h.path("/srv/blog/.deploy/built-test") for h in hosts) if m.exists()]
        assert new and not {d.name for d in new} & set(built), (new, built)     # unpacked, not built for test
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        end(proc)
    assert p.links("sites/test") == before
    assert any(h.path("/srv/blog/.deploy/lock").exists() for h in hosts)  # left behind by the killed run
    res = p.ok("deploy:test")
    assert p.links("sites/test")[0] != before[0] and len(set(p.links("sites/test"))) == 1
    assert not any(h.path("/srv/blog/.deploy/lock").exists() for h in hosts)
    assert "Traceback" not in res.stderr


@only_on("mysql", NEUTRAL)
def test_two_runs_at_once_never_interleave(world, tmp_path):
    """A second checkout of the same project (another dep file, the same hosts) runs while the first
    holds the hosts: it is refused with the holder's name. The same checkout twice: refused by the project
    lock before anything starts."""
    p, repo = world["project"], world["repo"]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(p.ini, other / "stages.ini")
    repo.commit("r4", {"static/version.txt": "r4\n"})
    env = dict(os.environ, STAGES_INI=str(p.ini), **{PASSWORD_ENV: NASTY_PASSWORD})
    # the first run held mid-build on web1 (a run is fast: without the pause it could end before the others
    # look), holding the stage's hosts and this checkout's project lock
    first = start_doit(p, "deploy:test", env={failpoints.ENV: f"build.after_unpack=pause@{world['hosts'][0].url}"})
    try:
        assert wait_paused(first), "the first run never reached its build"
        second = subprocess.run([*DOIT, "deploy:test"], cwd=other,
                                env=dict(env, STAGES_INI=str(other / "stages.ini")), capture_output=True, text=True)
        third = subprocess.run([*DOIT, "status"], cwd=p.workdir, env=env, capture_output=True, text=True)
        go_on(first)
        out, err = first.communicate(timeout=300)
    finally:
        end(first)
    assert first.returncode == 0, err
    assert second.returncode != 0 and "is locked by" in second.stderr, second.stderr
    assert f"pid {first.pid}, doit deploy:test" in second.stderr and "doit unlock:test" in second.stderr
    assert third.returncode != 0 and "another doit run uses" in third.stderr, third.stderr


@only_on("mysql", NEUTRAL)
def test_prod_reload_and_health(world, nginx_on):
    p, hosts = world["project"], world["hosts"]
    p.ok("deploy:test")
    p.ok("promote:staging")
    web = nginx_on(hosts[0])  # serves sites/current/static: the health URL answers once prod is live
    p.write(prod_stage_extra=f"health_url = http://{{host}}:{web.port}/version.txt\nhealth_timeout = 20s\n"
                             "reload_command = sh -c 'echo \"$STAGE $PWD\" >> /srv/blog/shared/reloads'\n")
    try:
        p.ok("promote:prod")
    finally:
        p.write(prod_stage_extra="")
    live = p.links("sites/current")[0].rsplit("/", 1)[1]
    for h in hosts:
        assert h.path("/srv/blog/shared/reloads").read_text() == f"prod /srv/blog/releases/{live}\n"
    assert web.get("/version.txt")[0] == 200


@only_on("mysql", NEUTRAL)
def test_cleanup_keeps_what_links_and_rollbacks_need(world):
    p, hosts = world["project"], world["hosts"]
    for h in hosts:
        names = {d.name for d in h.path("/srv/blog/releases").iterdir()}
        linked = {os.readlink(h.path(f"/srv/blog/{ln}")).rsplit("/", 1)[1]
                  for ln in ("sites/test", "sites/staging", "sites/current")}
        assert linked <= names
        test_releases = [r["release"] for r in p.log(h) if r["stage"] == "test" and r["result"] == "ok"]
        assert set(test_releases[-3:]) <= names  # keep_releases = 3: the last three good ones of each stage
        assert len(names) <= 3 * 3


@only_on("mysql", NEUTRAL)
def test_max_fail_lets_a_rollout_go_on_without_the_failing_host(world):
    p, repo, (web1, web2) = world["project"], world["repo"], world["hosts"]
    repo.commit("r7", {"static/version.txt": "r7\n"})
    p.ok("deploy:test")
    p.ok("promote:staging")
    new = p.links("sites/staging")[0]
    old = p.links("sites/current")
    web2.run(["sh", "-c", "touch /srv/blog/shared/no-reload"])
    reload = "reload_command = sh -c 'test ! -e /srv/blog/shared/no-reload'\n"
    try:
        p.write(prod_stage_extra=reload)  # max_fail = 0: web2's reload fails, so no host keeps the release
        res = p.doit("promote:prod")
        assert res.returncode != 0 and "back on its previous release" in res.stderr, res.stderr
        assert p.links("sites/current") == old
        p.write(prod_stage_extra=reload + "max_fail = 1\n")
        res = p.ok("promote:prod")
        assert "1 host(s) failed" in res.stdout
        assert p.links("sites/current") == [new, old[1]]
        assert p.log(web2)[-1]["result"] == "failed" and p.log(web1)[-1]["result"] == "ok"
    finally:
        web2.run(["rm", "-f", "/srv/blog/shared/no-reload"])
        p.write(prod_stage_extra="")
    p.ok("promote:prod")
    assert p.links("sites/current") == [new, new]


@only_on("mysql", "MySQL's DDL commits at once: a migration failing half-way leaves its first changes behind")
def test_failed_production_migration_names_the_backup_or_restores_it(world):
    from tests.lab.apprepo import PROD_ONLY_FAILURE

    p, repo, db = world["project"], world["repo"], world["db"]
    web1 = world["hosts"][0]
    repo.commit("r8", {"posts/migrations/0004_tag.py": PROD_ONLY_FAILURE, "static/version.txt": "r8\n"})
    p.ok("deploy:test")
    staging = p.links("sites/staging")
    db.query(world["prod"], "INSERT INTO posts_post (title, slug, body, created) VALUES ('keep', 'keep', 'me', NOW())")
    rows = db.row_counts(world["prod"])
    res = p.doit("promote:staging")
    assert res.returncode != 0 and "migrate:staging" in res.stderr, res.stderr
    before = [b for b in p.backups(web1) if b["reason"].startswith("before migrate:staging")][-1]
    assert before["file"] in res.stderr and "restore it from" in res.stderr
    assert p.links("sites/staging") == staging
    assert "posts_tag" in db.tables(world["prod"])  # half-migrated: the tool said so and left it
    p.write(prod_extra="restore_on_failed_migration = yes\n")
    try:
        res = p.doit("promote:staging")
    finally:
        p.write(prod_extra="")
    assert res.returncode != 0 and "was restored from" in res.stderr, res.stderr
    # the rerun goes on with the first attempt's unfinished migration: no second "before" backup (it would
    # hold the first attempt's leftovers); restored from the one taken before the first attempt, so the
    # database holds exactly that backup, without the table the first attempt left behind
    latest = [b for b in p.backups(web1) if b["reason"].startswith("before migrate:staging")][-1]
    assert latest["file"] in res.stderr and latest["name"] == before["name"]
    assert db.row_counts(world["prod"]) == before["tables"]
    assert "posts_tag" not in db.tables(world["prod"])
    assert db.row_counts(world["prod"])["posts_post"] == rows["posts_post"]
    assert p.links("sites/staging") == staging
    repo._run("git", "reset", "-q", "--hard", "HEAD~1")


@only_on("postgresql", "Django's migrations are transactional on PostgreSQL: a failed one leaves nothing behind")
def test_failed_production_migration_leaves_nothing_half_applied(world):
    """The PostgreSQL side of the test above: the same migration (a new table, then a failure) fails against
    production and leaves its schema, django_migrations and rows as they were; restore_on_failed_migration
    restores nothing then (a restore would only lose the writes since the backup: its DROP ... WITH (FORCE)
    would end the app's sessions too, and one stays open); the rerun, which goes on from that attempt,
    restores the backup taken before it, the same rows."""
    from tests.lab.apprepo import PROD_ONLY_FAILURE

    p, repo, db, prod = world["project"], world["repo"], world["db"], world["prod"]
    web1 = world["hosts"][0]
    repo.commit("r8", {"posts/migrations/0004_tag.py": PROD_ONLY_FAILURE, "static/version.txt": "r8\n"})
    p.ok("deploy:test")
    assert "posts.0004_tag" in db.applied(world["test"]) and "posts_tag" in db.tables(world["test"])
    staging = p.links("sites/staging")
    db.query(prod, "INSERT INTO posts_post (title, slug, body, created) VALUES ('keep', 'keep', 'me', NOW())")
    rows, tables, applied = db.row_counts(prod), db.tables(prod), db.applied(prod)
    app = world["postgres"].connect(prod, user=p.values["user"], password=p.password, application_name="the-app")
    p.write(prod_extra="restore_on_failed_migration = yes\n")
    try:
        res = p.doit("promote:staging")
        assert app.execute("SELECT count(*) FROM posts_post").fetchone()[0] == rows["posts_post"]  # not ended
    finally:
        app.close()
        p.write(prod_extra="")
    assert res.returncode != 0 and "migrate:staging" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "half-migrated" not in res.stderr
    assert "It changed nothing in prod (no migration of this run was applied; the backup taken just" in res.stderr
    assert res.stderr.rstrip().endswith("prod was left as it was, not restored"), res.stderr
    assert "restoring" not in json.loads(web1.path("/srv/blog/.deploy/migration-staging.json").read_text())
    record = json.loads(web1.path("/srv/blog/.deploy/migration-staging.json").read_text())
    assert record["failed"]["half_applied"] is False and record["outcome"] is None, record
    assert "posts_tag" not in db.tables(prod) and db.tables(prod) == tables      # nothing half-applied
    assert db.applied(prod) == applied and db.row_counts(prod) == rows
    assert p.links("sites/staging") == staging
    before = [b for b in p.backups(web1) if b["reason"].startswith("before migrate:staging")][-1]
    assert before["status"] == "verified" and before["tables"] == rows and before["file"] in res.stderr
    p.write(prod_extra="restore_on_failed_migration = yes\n")
    try:
        res = p.doit("promote:staging")
    finally:
        p.write(prod_extra="")
    assert res.returncode != 0 and "migrate:staging" in res.stderr, res.stderr
    assert db.tables(prod) == tables and db.applied(prod) == applied and db.row_counts(prod) == rows
    assert p.links("sites/staging") == staging
    repo._run("git", "reset", "-q", "--hard", "HEAD~1")
