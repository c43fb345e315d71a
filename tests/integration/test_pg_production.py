"""PostgreSQL through doit on real sshd hosts: a backup and a restore keep the password (shell metacharacters
and a backslash) off every command line here and on the hosts, and out of every file but the app's 0600 env
file. Production's migration waits a bounded time for its locks: held up by a session in an open
transaction on the table it alters, each attempt gives up after migration_lock_timeout (lock_timeout,
SQLSTATE 55P03), is tried again migration_lock_retries times, then the step stops with one line naming the
blocking session's pid and application. PostgreSQL runs each migration in a transaction: the change the
migration made before it waited is rolled back with it (nothing half-applied), so it is tried again (on
MySQL it is not) and the rerun after the transaction ends applies it once. Real sshd hosts, PostgreSQL 15,
Django, doit."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.lab.argv_recorder import recorded_argvs
from tests.lab.common import NASTY_PASSWORD, CmdlineScan
from tests.lab.project import DOIT, PASSWORD_ENV, REPO
from tests.lab.world import deploy_with_test_db_as_prod, open_world

# changes posts_comment, then waits for posts_post: on PostgreSQL the first change is rolled back with the wait
COMMENT_THEN_POST = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("posts", "0003_populate_post_slug")]
    operations = [migrations.AddField("comment", "held_up", models.CharField(max_length=20, null=True)),
                  migrations.AddField("post", "held_up", models.CharField(max_length=20, null=True))]
'''
MIGRATION = "posts.0004_held_up"


@pytest.fixture(scope="module")
def world(ssh_hosts, postgres, tmp_path_factory):
    with open_world(postgres, ssh_hosts, tmp_path_factory.mktemp("pglock")) as world:
        p = world["project"]
        for cmd in ("deploy:test", "promote:staging"):
            p.ok(cmd)
        yield world


def recorded_doit(p, log: Path, *args: str) -> subprocess.CompletedProcess:
    """doit args, as Project.doit runs it, under tests/lab/argv_recorder.py (every argv into log)."""
    environ = {**os.environ, "STAGES_INI": str(p.ini), PASSWORD_ENV: p.password,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    argv = [DOIT[0], "-m", "tests.lab.argv_recorder", str(log), *DOIT[3:], *args]
    return subprocess.run(argv, cwd=p.workdir, env=environ, capture_output=True, text=True, timeout=600)


def holding(root: Path, needles: list[bytes]) -> list[Path]:
    files = [Path(d, n) for d, _, names in os.walk(root) for n in names]
    return [f for f in files if not f.is_symlink() and f.is_file() and any(x in f.read_bytes() for x in needles)]


def test_backup_and_restore_keep_the_password_off_every_command_line_and_out_of_files(world, tmp_path):
    p, pg, hosts = world["project"], world["postgres"], world["hosts"]
    pg.query(world["prod"], "INSERT INTO posts_post (title, slug, body, created) VALUES ('argv', 'argv', 'x', NOW())")
    hosts[0].path("/srv/blog/.deploy/db-test.json").unlink()           # restore:test runs again
    log, words = tmp_path / "argv.jsonl", [NASTY_PASSWORD, quote(NASTY_PASSWORD, safe="")]
    p.write(max_age="1s")                                              # a fresh backup, taken now
    time.sleep(1.1)
    try:
        with CmdlineScan() as scan:                                    # every process here and on the hosts
            res = recorded_doit(p, log, "backup:prod", "restore:test")
    finally:
        p.write(max_age="24h")
    assert res.returncode == 0, res.stdout + res.stderr
    argvs = recorded_argvs(log)
    ran = " ".join(w for where, argv in argvs if where == "remote" for w in argv)
    assert "pg_dump --no-owner" in ran and "restore" in ran and "PGPASSFILE=" in ran, ran[:3000]
    assert [a for _, a in argvs if any(x in w for w in a for x in words)] == []
    assert scan.seen == []
    assert world["db"].row_counts(world["test"]) == world["db"].row_counts(world["prod"])
    assert ("argv",) in pg.query(world["test"], "SELECT title FROM posts_post WHERE slug = 'argv'")
    for h in hosts:
        found = holding(h.root, [w.encode() for w in words])
        assert found and all("/.deploy-env/" in str(f) and f.stat().st_mode & 0o777 == 0o600 for f in found), found
        assert not list(h.path("/srv/blog/.deploy").glob("cnf.*"))
    assert not any(w in res.stdout + res.stderr for w in words)


def test_the_restore_refuses_production_behind_a_port_forward_in_the_session_of_its_drop(world):
    """[database:test] names production's database through another port: the config cannot tell; the load
    asks the server in the session that would drop it (dumpfilter's first line), and refuses: nothing
    dropped, nothing switched."""
    p, pg = world["project"], world["postgres"]
    pg.query(world["prod"], "INSERT INTO posts_post (title, slug, body, created) VALUES ('kept', 'kept', 'x', NOW())")
    rows, links = world["db"].row_counts(world["prod"]), p.links("sites/test")
    res = deploy_with_test_db_as_prod(world, 5432)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert ("restore:test: refused: [database:test] reaches the same database as [database:prod] (database "
            f"{world['prod']} (oid ") in res.stderr, res.stderr
    assert world["db"].row_counts(world["prod"]) == rows and p.links("sites/test") == links
    assert ("kept",) in pg.query(world["prod"], "SELECT title FROM posts_post WHERE slug = 'kept'")


def columns(world, table: str) -> list[str]:
    return world["db"].columns(world["prod"], table)


def record(world) -> dict:
    return json.loads(world["hosts"][0].path("/srv/blog/.deploy/migration-staging.json").read_text())


def test_a_migration_held_up_by_an_open_transaction_gives_up_in_bounded_time_with_nothing_applied(world):
    p, pg, repo = world["project"], world["postgres"], world["repo"]
    repo.commit("held_up", {"posts/migrations/0004_held_up.py": COMMENT_THEN_POST, "static/version.txt": "held\n"})
    p.ok("deploy:test")                                     # applied on test (rehearsed there)
    release = p.links("sites/test")[0].rsplit("/", 1)[1]
    staging = p.links("sites/staging")
    before = {t: columns(world, t) for t in ("posts_comment", "posts_post")}
    holder = pg.connect(world["prod"], user=p.values["user"], password=NASTY_PASSWORD, application_name="holder-app",
                        autocommit=False)
    try:
        pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
        holder.execute("SELECT count(*) FROM posts_post").fetchone()   # ACCESS SHARE until the transaction ends
        p.write(prod_extra="migration_lock_timeout = 1s\nmigration_lock_retries = 2\n"
                           "restore_on_failed_migration = yes\n")
        res = p.doit("promote:staging", timeout=300)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
        assert res.returncode != 0 and len(errors) == 1, res.stdout + res.stderr
        line = errors[0]
        assert f"{MIGRATION} gave up waiting for a lock on posts_post 3 times, 1 s each" in line, line
        assert f"held by pid {pid} (user {p.values['user']}, application 'holder-app'" in line, line
        assert f"SELECT pg_terminate_backend({pid})" in line, line
        assert (f"Nothing of {MIGRATION} was applied (PostgreSQL runs each migration in a transaction)" in line
                and line.endswith(" was left as it was, not restored")), line
        # tried again, though it had changed posts_comment before it waited: that change was rolled back
        assert "(attempt 1 of 3)" in res.stdout and "(attempt 2 of 3)" in res.stdout, res.stdout
        assert {t: columns(world, t) for t in before} == before
        assert MIGRATION not in world["db"].applied(world["prod"])
        assert p.links("sites/staging") == staging
        rec = record(world)
        assert rec["release"] == release and rec["outcome"] is None
        assert "(PostgreSQL runs each migration in a transaction)" in rec["gave_up"]["why"]
        holder.commit()
    finally:
        holder.close()
        p.write(prod_extra="")
    res = p.ok("promote:staging")
    assert "continued its migration" in res.stdout, res.stdout
    assert "held_up" in columns(world, "posts_comment") and "held_up" in columns(world, "posts_post")
    assert MIGRATION in world["db"].applied(world["prod"])
    assert record(world)["outcome"] == "migrated"
    assert [x.rsplit("/", 1)[1] for x in p.links("sites/staging")] == [release, release]


TWO = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("posts", "{after}")]
    operations = [migrations.AddField("{model}", "{field}", models.CharField(max_length=20, null=True))]
'''


def test_a_migration_that_committed_before_the_held_up_one_counts_as_a_change(world):
    """Two migrations, each its own transaction: the first commits, the second gives up waiting for a lock.
    The database did change (the first is applied), so restore_on_failed_migration restores the backup
    taken before the first: the first's column is gone again and django_migrations says so."""
    p, pg, repo, db = world["project"], world["postgres"], world["repo"], world["db"]
    last = max(f.stem for f in (repo.path / "posts" / "migrations").glob("0*.py"))   # the latest so far
    n = int(last[:4])
    first, second = f"{n + 1:04d}_first_of_two", f"{n + 2:04d}_second_of_two"
    repo.commit("two migrations", {
        f"posts/migrations/{first}.py": TWO.format(after=last, model="comment", field="first_of_two"),
        f"posts/migrations/{second}.py": TWO.format(after=first, model="post", field="second_of_two"),
        "static/version.txt": "two\n"})
    p.ok("deploy:test")
    staging = p.links("sites/staging")
    before = {t: columns(world, t) for t in ("posts_comment", "posts_post")}
    applied = db.applied(world["prod"])
    holder = pg.connect(world["prod"], user=p.values["user"], password=NASTY_PASSWORD, application_name="holder-app",
                        autocommit=False)
    try:
        holder.execute("SELECT count(*) FROM posts_post").fetchone()   # ACCESS SHARE until the transaction ends
        p.write(prod_extra="migration_lock_timeout = 1s\nmigration_lock_retries = 0\n"
                           "restore_on_failed_migration = yes\n")
        res = p.doit("promote:staging", timeout=300)
        # the restore's DROP DATABASE ... WITH (FORCE) ended the holder's session (docs/backups.md)
        with pytest.raises(psycopg.OperationalError):
            holder.commit()
    finally:
        holder.close()
        p.write(prod_extra="")
    assert res.returncode != 0 and "was restored from" in res.stderr, res.stdout + res.stderr
    assert f"posts.{second} gave up waiting for a lock on posts_post" in res.stderr, res.stderr
    assert {t: columns(world, t) for t in before} == before          # the first's column went with the restore
    assert db.applied(world["prod"]) == applied
    assert p.links("sites/staging") == staging
    assert record(world)["outcome"] == "restored"
    repo._run("git", "reset", "-q", "--hard", "HEAD~1")
