"""The migration rehearsal end to end: real sshd hosts, real MariaDB, the sample blog's real Django
migrations (tests/fixtures/rehearsal/migrations.py, added as commits). The tests run in order on one
project: each release is rehearsed by deploy:test on a fresh copy of production, and promote:staging is
guarded by that rehearsal."""
from __future__ import annotations

import json
import time

import pytest

from tests.lab.common import NASTY_PASSWORD, CmdlineScan
from tests.lab.rehearsal_migrations import files

# times a table copy and its write stall: run alone, not beside another worker (scripts/test)
pytestmark = pytest.mark.solo

MIGRATIONS = files()


@pytest.fixture(scope="module")
def world(blog_world):
    return blog_world


def rid(p) -> str:
    return p.links("sites/test")[0].rsplit("/", 1)[-1]


def report(world, release: str) -> dict:
    return json.loads(world["hosts"][0].path(f"/srv/blog/.deploy/rehearsals/{release}.json").read_text())


def migration(rep: dict, name: str) -> dict:
    return next(m for m in rep["migrations"] if m["name"] == f"posts.{name}")


def add(world, name: str) -> None:
    path = f"posts/migrations/{name}.py"
    world["repo"].commit(name, {path: MIGRATIONS[path], "static/version.txt": name + "\n"})


def fresh_deploy(p) -> None:
    """deploy:test with a backup of production taken now (backup_max_age 1s), as after production changed."""
    p.write(max_age="1s")
    time.sleep(1.1)
    try:
        p.ok("deploy:test")
    finally:
        p.write(max_age="24h")


def columns(world, table: str = "posts_post") -> list[str]:
    return [c for (c,) in world["mariadb"].query(
        None, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
              "ORDER BY ORDINAL_POSITION", (world["prod"], table))]


def grow_posts(world, rows: int) -> None:
    """posts_post in production doubled with INSERT ... SELECT until it holds `rows` rows."""
    db, prod = world["mariadb"], world["prod"]
    if db.row_counts(prod)["posts_post"] == 0:
        db.query(prod, "INSERT INTO posts_post (title, slug, body, created) VALUES "
                       "('a title of some forty characters, padded', 'a-title', 'body', NOW())")
    while (have := db.row_counts(prod)["posts_post"]) < rows:
        db.query(prod, "INSERT INTO posts_post (title, slug, body, created) SELECT title, slug, body, created "
                       f"FROM posts_post LIMIT {min(have, rows - have)}")


def test_first_release_creates_its_tables_and_passes_the_guard(world):
    p = world["project"]
    res = p.ok("deploy:test")
    first = rid(p)
    rep = report(world, first)
    assert rep["applied_before"] == [] and rep["database"] == "test" and rep["backup"]
    assert [m["name"] for m in rep["migrations"]] == ["posts.0001_initial", "posts.0002_post_slug",
                                                      "posts.0003_populate_post_slug"]
    assert all(m["unsafe"] == [] and m["seconds"] > 0 for m in rep["migrations"])
    assert "posts.0002_post_slug" in res.stdout  # the table printed at the end of migrate:test
    mode = world["hosts"][0].path(f"/srv/blog/.deploy/rehearsals/{first}.json").stat().st_mode & 0o777
    assert mode == 0o644
    assert world["hosts"][0].path(f"/srv/blog/.deploy/rehearsals/{first}.md").read_text().startswith("### ")
    p.ok("promote:staging")
    assert "posts_post" in world["mariadb"].tables(world["prod"])


def test_rebuild_stalls_writes_and_instant_add_field_does_not(world):
    """0004 adds two nullable columns (instant in MariaDB); 0005 turns title VARCHAR into LONGTEXT (a table
    copy). On 200000 rows the copy blocks the probe's writes for its whole length; the AddField does not.
    No password on any command line meanwhile (tunnel and probe included)."""
    p, db = world["project"], world["mariadb"]
    grow_posts(world, 200_000)
    add(world, "0004_post_subtitle")
    add(world, "0005_post_title_text")
    with CmdlineScan() as scan:
        fresh_deploy(p)
    assert scan.seen == []
    release = rid(p)
    rep = report(world, release)
    added, rebuilt = migration(rep, "0004_post_subtitle"), migration(rep, "0005_post_title_text")
    rows = db.row_counts(world["prod"])["posts_post"]
    assert rebuilt["tables"][0]["name"] == "posts_post" and rebuilt["tables"][0]["rows"] == rows
    assert rebuilt["tables"][0]["mb"] > 1
    # a quiet machine rebuilds 200k rows in well under a second: a few probe writes, one of them stalled
    assert rep["probe"]["tables"] == ["posts_post"] and rep["probe"]["writes"] >= 3
    # writes wait for most of the copy (a fixed threshold failed both ways: machines copy at their own speed)
    assert rebuilt["max_write_stall"] > max(0.2, 0.5 * rebuilt["seconds"]), rep
    assert rebuilt["max_write_stall"] >= 5 * (added["max_write_stall"] or 0.0), rep
    assert rebuilt["seconds"] > 0.3 and rebuilt["unsafe"][0]["kind"] == "alter_type"
    assert added["unsafe"] == [] and "ADD COLUMN `subtitle`" in added["sql"][0]
    assert NASTY_PASSWORD not in json.dumps(rep)
    world["timing_small"] = (rows, rebuilt["seconds"])


def test_rebuild_time_grows_with_the_rows(world):
    """The same release rehearsed again on three times the rows (its report removed: deploy:test takes a
    new backup, restores it and rehearses again). Three times, and a growth of only 1.3x asked: the
    machine is shared, and a table copy's time varies with the load."""
    p, db = world["project"], world["mariadb"]
    small_rows, small_seconds = world["timing_small"]
    grow_posts(world, 3 * small_rows)
    release = rid(p)
    world["hosts"][0].path(f"/srv/blog/.deploy/rehearsals/{release}.json").unlink()
    p.ok("deploy:test")
    rep = report(world, release)
    rebuilt = migration(rep, "0005_post_title_text")
    assert rebuilt["tables"][0]["rows"] == db.row_counts(world["prod"])["posts_post"] == 3 * small_rows
    assert rebuilt["seconds"] > 1.3 * small_seconds, (small_seconds, rebuilt["seconds"])
    out = p.ok("rehearsal:test").stdout
    assert "posts.0005_post_title_text" in out and "alter_type" in out
    # back to a small production, then production gets 0004 and 0005 (alter_type: accepted for this one)
    db.query(world["prod"], "DELETE FROM posts_post WHERE id > 50")
    res = p.doit("promote:staging")
    assert res.returncode != 0 and "alter_type" in res.stderr, res.stderr
    p.ok("promote:staging", env={"DEPLOY_ALLOW_UNSAFE": release})
    assert "subtitle" in columns(world)


def test_dropping_a_column_is_refused_unless_accepted_for_that_release(world):
    p, db = world["project"], world["mariadb"]
    add(world, "0006_remove_post_subtitle")
    fresh_deploy(p)
    release = rid(p)
    rep = report(world, release)
    drop = migration(rep, "0006_remove_post_subtitle")
    assert [(u["kind"], u["table"], u["column"]) for u in drop["unsafe"]] == [("drop_column", "posts_post",
                                                                               "subtitle")]
    before_cols = columns(world)
    backups = len(p.backups(world["hosts"][0]))
    res = p.doit("promote:staging")
    assert res.returncode != 0 and "refused" in res.stderr and "unsafe" in res.stderr, res.stderr
    assert f"DEPLOY_ALLOW_UNSAFE={release}" in res.stderr and "Traceback" not in res.stderr
    assert "posts.0006_remove_post_subtitle" in res.stdout  # the report was printed
    assert columns(world) == before_cols and "subtitle" in before_cols
    assert len(p.backups(world["hosts"][0])) == backups  # refused before production's "before" backup
    res = p.doit("promote:staging", env={"DEPLOY_ALLOW_UNSAFE": "blog-2000-01-01-0000-000000000000"})
    assert res.returncode != 0 and "refused" in res.stderr
    assert columns(world) == before_cols
    p.ok("promote:staging", env={"DEPLOY_ALLOW_UNSAFE": release})
    assert "subtitle" not in columns(world) and "summary" in columns(world)
    assert {"posts.0006_remove_post_subtitle"} <= {f"{a}.{n}" for a, n in db.query(
        world["prod"], "SELECT app, name FROM django_migrations")}


def test_a_stale_rehearsal_is_refused_and_a_new_deploy_rehearses_again(world):
    p, db = world["project"], world["mariadb"]
    add(world, "0007_post_views")
    fresh_deploy(p)
    release = rid(p)
    assert migration(report(world, release), "0007_post_views")["unsafe"] == []
    # production migrated by another route after its backup was taken
    db.query(world["prod"], "INSERT INTO django_migrations (app, name, applied) "
                            "VALUES ('posts', '0099_by_hand', NOW())")
    res = p.doit("promote:staging", env={"DEPLOY_ALLOW_UNSAFE": release})
    assert res.returncode != 0 and "stale" in res.stderr and "+posts.0099_by_hand" in res.stderr, res.stderr
    assert "views" not in columns(world)
    fresh_deploy(p)  # the stale report is set aside: a new backup, a new copy, a new rehearsal
    assert "posts.0099_by_hand" in report(world, release)["applied_before"]
    p.ok("promote:staging")
    assert "views" in columns(world)
