"""deploy:test end to end: two real sshd hosts (own mount namespaces), a real MariaDB or PostgreSQL (the
module runs on both: engine_world, tests/integration/engines.py), real Django migrations, real testinfra.
The tests of this module run in order on one project, as a team would."""
from __future__ import annotations

import hashlib
import json
import os
import time
from urllib.parse import quote

import pytest

from tests.lab.common import NASTY_PASSWORD, CmdlineScan
from tests.lab.project import tree


@pytest.fixture(scope="module")
def world(engine_world):
    return engine_world


def rid_of(link: str) -> str:
    return link.rsplit("/", 1)[-1]


def test_first_deploy_puts_one_release_on_every_host(world):
    p, repo, db = world["project"], world["repo"], world["db"]
    res = p.ok("deploy:test")
    links = p.links("sites/test")
    assert links[0] == links[1] and links[0].startswith("../releases/blog-")
    rid = rid_of(links[0])
    commit = repo._run("git", "rev-parse", "HEAD").strip()
    assert rid.endswith(commit[:12])
    sha = p.archive_sha(rid)
    for host in world["hosts"]:
        art = host.path(f"/srv/blog/.deploy/artifacts/{rid}.tar.gz")
        assert hashlib.sha256(art.read_bytes()).hexdigest() == sha
        assert host.path(f"/srv/blog/releases/{rid}/REVISION").read_text().strip() == commit
        env = host.path(f"/srv/blog/releases/{rid}/.deploy-env/test.env")     # the release's own
        assert env.stat().st_mode & 0o777 == 0o600 and env.parent.stat().st_mode & 0o777 == 0o700
        assert os.readlink(host.path("/srv/blog/shared/test.env")) == "../sites/test/.deploy-env/test.env"
    # the test database was migrated; production's was not touched
    assert "posts.0003_populate_post_slug" in db.applied(world["test"])
    assert db.tables(world["prod"]) == []
    assert NASTY_PASSWORD not in res.stdout + res.stderr


def test_rerun_with_nothing_changed_writes_nothing(world):
    p = world["project"]
    before = [tree(h.root) for h in world["hosts"]]
    res = p.ok("deploy:test")
    assert [tree(h.root) for h in world["hosts"]] == before
    ran = [ln for ln in res.stdout.splitlines() if ln.startswith(".  ")]
    assert ran == [".  verify:test"], res.stdout


def test_promote_then_production_gains_rows(world):
    p, db = world["project"], world["db"]
    p.ok("promote:staging")
    assert "posts.0003_populate_post_slug" in db.applied(world["prod"])
    for i in range(5):
        db.query(world["prod"], "INSERT INTO posts_post (title, slug, body, created) VALUES (%s, %s, %s, NOW())",
                 (f"prod post {i}", f"prod-post-{i}", f"body {i}"))


def test_new_revision_rehearses_its_data_migration_on_a_fresh_copy_of_production(world):
    p, repo, db = world["project"], world["repo"], world["db"]
    repo.add_data_migration()
    p.write(max_age="1s")
    time.sleep(1.1)
    backups_before = len(p.backups(world["hosts"][0]))
    p.ok("deploy:test")
    assert len(p.backups(world["hosts"][0])) == backups_before + 1  # a fresh backup of prod was taken
    bodies = [b for (b,) in db.query(world["test"], "SELECT body FROM posts_post ORDER BY id")]
    assert len(bodies) == 5 and all(b.endswith(" [rehearsed]") for b in bodies)
    # production: its rows as they were, the new migration not applied
    prod_bodies = [b for (b,) in db.query(world["prod"], "SELECT body FROM posts_post ORDER BY id")]
    assert prod_bodies == [f"body {i}" for i in range(5)]
    assert "posts.0004_rehearsed" not in db.applied(world["prod"])
    assert "posts.0004_rehearsed" in db.applied(world["test"])
    p.write(max_age="24h")


def test_failing_migration_leaves_the_link_alone(world):
    p, repo, db = world["project"], world["repo"], world["db"]
    before = p.links("sites/test")
    repo.add_failing_migration()
    res = p.doit("deploy:test")
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert any("migrate:test" in ln and "127.0.0.1" in ln for ln in err), res.stderr
    assert "Traceback" not in res.stderr
    assert p.links("sites/test") == before
    assert "posts.0005_boom" not in db.applied(world["test"]) and "posts.0004_rehearsed" in db.applied(world["test"])
    repo._run("git", "reset", "-q", "--hard", "HEAD~1")


def test_half_written_dump_is_never_newest(world):
    """The dump fails after it began: on MySQL a view over a dropped table (mysqldump has written part of
    the dump when it reaches it), on PostgreSQL a table the app's role may not read (pg_dump stops there)."""
    p, db, web1 = world["project"], world["db"], world["hosts"][0]
    newest = p.backups(web1)[-1]
    if world["engine"] == "mysql":
        db.query(world["prod"], "CREATE TABLE doomed (id INT)")
        db.query(world["prod"], "CREATE VIEW broken_view AS SELECT id FROM doomed")
        db.query(world["prod"], "DROP TABLE doomed")
    else:
        db.query(world["prod"], "CREATE TABLE not_yours (id INT)")     # the superuser's: the role cannot read it
    try:
        p.write(max_age="1s")
        time.sleep(1.1)
        res = p.doit("backup:prod")
        assert res.returncode != 0 and "backup:prod" in res.stderr
        assert p.backups(web1)[-1] == newest
        leftovers = [x for x in os.listdir(web1.path("/srv/blog/db_backup")) if "partial" in x]
        assert leftovers == []
        # and the test database is still refreshed from the last good one
        p.ok("restore:test")
        marker = json.loads(web1.path("/srv/blog/.deploy/db-test.json").read_text())
        assert marker["backup"] == newest["name"]
    finally:
        db.query(world["prod"], "DROP VIEW broken_view" if world["engine"] == "mysql" else "DROP TABLE not_yours")
        p.write(max_age="24h")


def test_no_password_on_any_command_line_in_output_or_readable_file(world):
    p, repo = world["project"], world["repo"]
    repo.commit("r4", {"static/version.txt": "r4\n"})
    with CmdlineScan() as scan:
        res = p.ok("deploy:test")
    assert scan.seen == []
    assert NASTY_PASSWORD not in res.stdout + res.stderr
    assert not os.path.exists("/tmp/pwned")
    needles = [NASTY_PASSWORD.encode(), quote(NASTY_PASSWORD, safe="").encode()]
    for root in [p.workdir] + [h.root for h in world["hosts"]]:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 5_000_000:
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
                if any(n in data for n in needles):
                    assert os.stat(path).st_mode & 0o077 == 0, f"{path} holds the password, mode not 0600"
    dep = (p.workdir / ".doit-stages.sqlite3").read_bytes()
    assert not any(n in dep for n in needles)
