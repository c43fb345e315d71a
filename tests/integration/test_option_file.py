"""option_file instead of password_env, end to end on two real sshd hosts and MariaDB: backup, restore and
migrate (test and production) work with a MySQL option file that exists only on the hosts, and its
password (shell metacharacters, quotes, '#', backslashes) never leaves them. Also: `backup:<db> --force`."""
from __future__ import annotations

import os
from urllib.parse import quote

import pytest

from tests.lab.common import NASTY_PASSWORD, CmdlineScan
from tests.lab.world import PROD_CNF


def applied(mariadb, db) -> set[str]:
    if "django_migrations" not in mariadb.tables(db):
        return set()
    return {f"{a}.{n}" for a, n in mariadb.query(db, "SELECT app, name FROM django_migrations")}


@pytest.fixture(scope="module")
def world(option_file_world):
    return option_file_world


def run_watching_cmdlines(p, *args):
    """Run doit while scanning every process's command line for the password."""
    with CmdlineScan() as scan:
        res = p.doit(*args)
    assert res.returncode == 0, f"doit {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    assert scan.seen == [], f"the password was on a command line: {scan.seen}"
    assert NASTY_PASSWORD not in res.stdout + res.stderr
    return res


def test_deploy_and_promote_with_option_files(world):
    p, db = world["project"], world["mariadb"]
    run_watching_cmdlines(p, "deploy:test")
    web1, web2 = world["hosts"]
    assert "posts.0003_populate_post_slug" in applied(db, world["test"])
    assert db.tables(world["prod"]) == []
    assert len(p.backups(web1)) == 1 and p.backups(web1)[0]["status"] == "verified"
    env = web1.path("/srv/blog/shared/test.env").read_text()
    assert "DATABASE_OPTION_FILE='~/.dst-" in env and NASTY_PASSWORD not in env
    # production migrated by the promotion, with a verified backup before and after it
    run_watching_cmdlines(p, "promote:staging")
    assert "posts.0003_populate_post_slug" in applied(db, world["prod"])
    assert [b["reason"].split()[0] for b in p.backups(web1)[-2:]] == ["before", "after"]


def test_forced_backup_and_restore_with_option_files(world):
    p, db = world["project"], world["mariadb"]
    web1 = world["hosts"][0]
    db.query(world["prod"], "INSERT INTO posts_post (title, slug, body, created) "
                            "VALUES ('written in production', 'prod-only', 'x', NOW())")
    count = len(p.backups(web1))
    p.ok("backup:prod")                                  # the newest is minutes old: nothing to do
    assert len(p.backups(web1)) == count
    run_watching_cmdlines(p, "backup:prod", "--force")   # a backup now, however young the newest
    backups = p.backups(web1)
    assert len(backups) == count + 1 and backups[-1]["status"] == "verified"
    assert backups[-1]["tables"]["posts_post"] == db.row_counts(world["prod"])["posts_post"]
    run_watching_cmdlines(p, "restore:test")
    assert db.query(world["test"], "SELECT title FROM posts_post WHERE slug = 'prod-only'") == [
        ("written in production",)]


def test_the_password_never_leaves_the_hosts(world):
    p = world["project"]
    needles = [NASTY_PASSWORD.encode(), quote(NASTY_PASSWORD, safe="").encode()]
    for dirpath, _, files in os.walk(p.workdir):          # the deployer's files: never, whatever the mode
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) < 50_000_000:
                with open(path, "rb") as fh:
                    data = fh.read()
                assert not any(n in data for n in needles), f"{path} holds the password"
    for h in world["hosts"]:                               # on the hosts: only in the user's option file
        for dirpath, _, files in os.walk(h.root):
            for name in files:
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 5_000_000:
                    continue
                with open(path, "rb") as fh:
                    if any(n in fh.read() for n in needles):
                        assert path == str(h.path(PROD_CNF)), f"{path} holds the password"
