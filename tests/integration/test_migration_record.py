"""Production's migration is done only when its last effect, the verified "after" backup, is recorded: the
deployer killed at each migrate failpoint of promote:staging leaves an intent, and the next run with no
manual step finishes it from the "before" backup of the first attempt (never a second one), takes exactly
one "after" backup, and the release log names that true pair. A migration held up by an open transaction
waits a bounded time, tries again, then stops with one line naming the blocking connection; production is
left unchanged, and once that transaction ends the rerun goes on. A failed migration's restore that a dead
run left half-done is finished by the next run, never migrated on. Real sshd hosts, MariaDB or PostgreSQL
(engine_world), Django.

The deployer killed during production's migration: on both engines. The lock waits and the failed
migration's restore: on MySQL (their reasons at each test)."""
from __future__ import annotations

import gzip
import json
import signal

import pytest

from tests.integration.engines import only_on
from tests.lab.common import NASTY_PASSWORD

ADD_COLUMN = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("posts", "{previous}")]
    operations = [migrations.AddField("post", "{column}", models.CharField(max_length=20, null=True))]
'''

# adds a column, then creates a table: on a database that already has gate_block, fails after its first change
GATED = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("posts", "{previous}")]
    operations = [migrations.AddField("post", "{column}", models.CharField(max_length=20, null=True)),
                  migrations.RunSQL("CREATE TABLE gate_block (x int)", "DROP TABLE gate_block")]
'''

# changes posts_comment, then waits for posts_post: held up by a transaction on posts_post after a change
COMMENT_THEN_POST = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("posts", "{previous}")]
    operations = [migrations.AddField("comment", "{column}", models.CharField(max_length=20, null=True)),
                  migrations.AddField("post", "{column}", models.CharField(max_length=20, null=True))]
'''


@pytest.fixture(scope="module")
def world(engine_world):
    p = engine_world["project"]
    for cmd in ("deploy:test", "promote:staging"):
        p.ok(cmd)
    return {**engine_world, "previous": "0003_populate_post_slug", "number": 4}


def rid(link):
    return link.rsplit("/", 1)[1] if link else None


def release_adding(world, column: str, template: str = ADD_COLUMN) -> tuple[str, str]:
    """A new release whose one migration adds `column` to posts_post, deployed to test (rehearsed there)."""
    name = f"{world['number']:04d}_{column}"
    world["repo"].commit(column, {f"posts/migrations/{name}.py": template.format(previous=world["previous"],
                                                                                column=column),
                                  "static/version.txt": column + "\n"})
    world["previous"], world["number"] = name, world["number"] + 1
    world["project"].ok("deploy:test")
    return rid(world["project"].links("sites/test")[0]), f"posts.{name}"


def columns(world, table: str = "posts_post") -> list[str]:
    return world["db"].columns(world["prod"], table)


def applied(world) -> set[str]:
    return world["db"].applied(world["prod"])


def around(world, release: str) -> dict[str, list[dict]]:
    """The verified backups tagged before/after this release's migration of staging, oldest first."""
    metas = world["project"].backups(world["hosts"][0])
    return {w: [m for m in metas if m["reason"] == f"{w} migrate:staging {release}"] for w in ("before", "after")}


def dump_text(world, meta: dict) -> str:
    with gzip.open(world["hosts"][0].path(f"/srv/blog/db_backup/{meta['file']}"), "rt") as f:
        return f.read()


def record(world) -> dict:
    return json.loads(world["hosts"][0].path("/srv/blog/.deploy/migration-staging.json").read_text())


def assert_finished_with_one_pair(world, release: str, migration: str, column: str, first_before: dict):
    p = world["project"]
    backups = around(world, release)
    assert [b["name"] for b in backups["before"]] == [first_before["name"]], "a second before backup was taken"
    assert len(backups["after"]) == 1, backups["after"]
    after = backups["after"][0]
    assert column in columns(world) and migration in applied(world)
    # the after backup holds the migrated schema and records the migration; the before backup neither
    app, name = migration.split(".")
    # mysqldump: `col` varchar(20) and ('app','name') in an INSERT; pg_dump: col character varying(20) and a
    # COPY line app<TAB>name<TAB>
    has_column, has_row = ((f"`{column}` varchar(20)", f"'{app}','{name}'") if world["engine"] == "mysql" else
                           (f"    {column} character varying(20)", f"\t{app}\t{name}\t"))
    for meta, migrated in ((after, True), (first_before, False)):
        text = dump_text(world, meta)
        assert (has_column in text) is migrated
        assert (has_row in text) is migrated
    for h in world["hosts"]:
        last = [r for r in p.log(h) if r["stage"] == "staging"][-1]
        assert (last["release"], last["result"]) == (release, "ok")
        assert last["backups"] == [first_before["file"], after["file"]]
    rec = record(world)
    assert (rec["release"], rec["outcome"], rec["before"]["name"], rec["after"]["name"]) == \
        (release, "migrated", first_before["name"], after["name"])
    assert [rid(x) for x in p.links("sites/staging")] == [release, release]


@pytest.mark.parametrize("point", ["migrate.after_migrate", "migrate.before_backup_after"])
def test_killed_after_the_migration_the_next_run_takes_the_one_after_backup(world, point):
    p = world["project"]
    column = point.split(".")[1]
    release, migration = release_adding(world, column)
    staging = p.links("sites/staging")
    res = p.doit("promote:staging", env={"DEPLOY_FAILPOINTS": f"{point}=kill"})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert migration in applied(world) and p.links("sites/staging") == staging
    backups = around(world, release)
    assert len(backups["before"]) == 1 and backups["after"] == []
    assert record(world)["outcome"] is None  # the intent, left open
    res = p.ok("promote:staging")
    assert f"finished the migration of {release} an earlier run left unfinished: its migration had completed" \
        in res.stdout, res.stdout
    assert backups["before"][0]["file"] in res.stdout
    assert_finished_with_one_pair(world, release, migration, column, backups["before"][0])
    assert ".  migrate:staging" not in p.ok("promote:staging").stdout  # done: up to date, not run again


def test_killed_after_the_before_backup_the_next_run_migrates_from_that_backup(world):
    p = world["project"]
    release, migration = release_adding(world, "after_backup_before")
    res = p.doit("promote:staging", env={"DEPLOY_FAILPOINTS": "migrate.after_backup_before=kill"})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert migration not in applied(world)
    backups = around(world, release)
    assert len(backups["before"]) == 1 and backups["before"][0]["status"] == "verified"
    res = p.ok("promote:staging")
    assert "continued its migration, then took the after backup" in res.stdout, res.stdout
    assert_finished_with_one_pair(world, release, migration, "after_backup_before", backups["before"][0])


@only_on("mysql", "a metadata lock held by an open MySQL transaction, its CONNECTION_ID and KILL in the message")
def test_a_migration_held_up_by_an_open_transaction_stops_in_bounded_time_naming_it(world):
    p, mariadb = world["project"], world["mariadb"]
    release, migration = release_adding(world, "held_up")
    staging, before_columns = p.links("sites/staging"), columns(world)
    holder = mariadb.connect(world["prod"], user=p.values["user"], password=NASTY_PASSWORD)
    try:
        cur = holder.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        holder_id = cur.fetchone()[0]
        cur.execute("START TRANSACTION")
        cur.execute("SELECT COUNT(*) FROM posts_post")  # a shared metadata lock until the transaction ends
        cur.fetchall()
        # restore_on_failed_migration: nothing was applied, so nothing is restored (a restore would lose
        # the writes made since the before backup, and wait behind the same transaction a day long)
        p.write(prod_extra="migration_lock_timeout = 1s\nmigration_lock_retries = 2\n"
                           "restore_on_failed_migration = yes\n")
        # the server's own lock_wait_timeout is a day: unbounded, this run would outlast the timeout here
        res = p.doit("promote:staging", timeout=300)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
        assert res.returncode != 0 and len(errors) == 1, res.stderr
        assert f"{migration} gave up waiting for a lock on posts_post 3 times, 1 s each" in errors[0], errors[0]
        assert f"connection {holder_id} (" in errors[0] and f"KILL {holder_id}" in errors[0]
        assert "Nothing was applied (no attempt got past its first change); " in errors[0], errors[0]
        assert errors[0].endswith(" was left as it was, not restored"), errors[0]
        assert record(world)["outcome"] is None and around(world, release)["after"] == []
        assert "(attempt 1 of 3)" in res.stdout and "(attempt 2 of 3)" in res.stdout, res.stdout
        assert columns(world) == before_columns and migration not in applied(world)
        assert p.links("sites/staging") == staging
        holder.commit()
    finally:
        holder.close()
        p.write(prod_extra="")
    first_before = around(world, release)["before"]
    assert len(first_before) == 1
    res = p.ok("promote:staging")
    assert "continued its migration" in res.stdout, res.stdout
    assert_finished_with_one_pair(world, release, migration, "held_up", first_before[0])


def posts(world) -> list[tuple]:
    return sorted(world["mariadb"].query(world["prod"], "SELECT id, title, slug FROM posts_post"))


@only_on("mysql", "MySQL's DDL commits at once: the failed migration leaves its first change, which the restore "
                 "undoes; on PostgreSQL it leaves none (test_failures.py)")
def test_a_restore_left_half_done_after_a_failed_migration_is_finished_by_the_next_run(world):
    p, mariadb, prod = world["project"], world["mariadb"], world["prod"]
    release, migration = release_adding(world, "gated", GATED)   # rehearsed on test, where it succeeds
    for title in ("kept one", "kept two", "kept three"):
        mariadb.query(prod, "INSERT INTO posts_post (title, slug, body, created) VALUES (%s, %s, 'x', NOW())",
                      (title, title.replace(" ", "-")))
    mariadb.query(prod, "CREATE TABLE gate_block (x int)")   # production only: the migration fails there
    staging, before_posts, before_columns = p.links("sites/staging"), posts(world), columns(world)
    p.write(prod_extra="restore_on_failed_migration = yes\n")
    try:
        res = p.doit("promote:staging", env={"DEPLOY_FAILPOINTS": "migrate.before_restore=kill"})
        assert res.returncode == -signal.SIGKILL, res.stderr
        assert "gated" in columns(world), "the migration's first change was not made"
        rec = record(world)
        assert rec["outcome"] is None and rec["restoring"] and rec["before"], rec
        status = p.ok("status").stdout
        assert (f"UNFINISHED migration of {release} on database prod, its restore of prod from "
                f"{rec['before']['file']} after the migration failed did not finish: doit promote:staging "
                "finishes it") in status, status
        # what a restore that died half-way leaves: posts_post dropped and re-created, its rows not loaded
        # yet, gate_block dropped and not re-created
        mariadb.query(prod, "ALTER TABLE posts_post DROP COLUMN gated")
        mariadb.query(prod, "DELETE FROM posts_post")
        mariadb.query(prod, "DROP TABLE gate_block")
        res = p.doit("promote:staging")
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
        assert res.returncode != 0 and len(errors) == 1, res.stdout + res.stderr
        assert f"an earlier run's migration of {release} failed and left the restore of " in errors[0], errors[0]
        assert f"was restored from {rec['before']['file']}" in errors[0] and "Nothing was migrated" in errors[0]
        # production is its before backup again, whole; nothing migrated it on the way
        assert posts(world) == before_posts and columns(world) == before_columns
        assert migration not in applied(world) and "gate_block" in mariadb.tables(prod)
        rec = record(world)
        assert rec["outcome"] == "restored" and rec["after"] is None, rec
        assert around(world, release)["after"] == [] and p.links("sites/staging") == staging
    finally:
        p.write(prod_extra="")
    mariadb.query(prod, "DROP TABLE gate_block")   # the cause fixed: the next run begins a new attempt
    p.ok("promote:staging")
    assert migration in applied(world) and "gated" in columns(world)
    assert [row[1] for row in posts(world)] == [row[1] for row in before_posts]
    assert record(world)["outcome"] == "migrated" and [rid(x) for x in p.links("sites/staging")] == [release] * 2
    assert "UNFINISHED" not in p.ok("status").stdout


@only_on("mysql", "MySQL's metadata lock and its non-transactional DDL (the first change applied before the wait)")
def test_a_restore_held_up_by_the_same_transaction_stops_in_bounded_time_and_the_next_run_finishes_it(world):
    p, mariadb, prod = world["project"], world["mariadb"], world["prod"]
    release, migration = release_adding(world, "late_lock", COMMENT_THEN_POST)
    staging, before_posts = p.links("sites/staging"), posts(world)
    before = {t: columns(world, t) for t in ("posts_post", "posts_comment")}
    holder = mariadb.connect(prod, user=p.values["user"], password=NASTY_PASSWORD)
    try:
        cur = holder.cursor()
        cur.execute("START TRANSACTION")
        cur.execute("SELECT COUNT(*) FROM posts_post")   # holds posts_post's metadata lock until it ends
        cur.fetchall()
        p.write(prod_extra="migration_lock_timeout = 1s\nmigration_lock_retries = 1\n"
                           "restore_on_failed_migration = yes\n")
        # the migration changes posts_comment, then gives up on posts_post; the restore's DROP waits behind
        # the same transaction: bounded too (the server's own wait is a day: the timeout here would end it)
        res = p.doit("promote:staging", timeout=300)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
        assert res.returncode != 0 and len(errors) == 1, res.stdout + res.stderr
        assert f"{migration} gave up waiting for a lock on posts_post 1 time, 1 s each" in errors[0], errors[0]
        # not tried again: its first operation is applied, a second attempt would fail on "Duplicate column"
        assert f"Not tried again: {migration} had made 1 change(s) before it waited" in errors[0], errors[0]
        assert "(attempt 1 of 2)" not in res.stdout, res.stdout
        rec = record(world)
        assert (f"Restoring prod from {rec['before']['file']} (restore_on_failed_migration = yes) failed too: "
                in errors[0]) and "Lock wait timeout exceeded" in errors[0], errors[0]
        assert errors[0].endswith("doit promote:staging finishes the restore once that is fixed"), errors[0]
        assert rec["outcome"] is None and rec["restoring"], rec
        assert "late_lock" in columns(world, "posts_comment"), "the first change was not made"
        assert "UNFINISHED migration of" in p.ok("status").stdout
        holder.commit()
    finally:
        holder.close()
        p.write(prod_extra="")
    res = p.doit("promote:staging")   # the lock is free: this run finishes the restore, then stops
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
    assert res.returncode != 0 and len(errors) == 1 and "it is finished now" in errors[0], res.stdout + res.stderr
    assert {t: columns(world, t) for t in before} == before and posts(world) == before_posts
    assert migration not in applied(world) and record(world)["outcome"] == "restored"
    assert p.links("sites/staging") == staging
    p.ok("promote:staging")           # and the one after migrates
    assert migration in applied(world) and "late_lock" in columns(world, "posts_comment")
    assert [rid(x) for x in p.links("sites/staging")] == [release] * 2
