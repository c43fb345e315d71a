"""plan:<stage> (issue 21) on two real sshd hosts and a real MariaDB: what deploy:test / promote:staging would do,
node by node, on a fresh stage, after a deploy, after a new commit, and for a promotion with pending
migrations; and every time, a scan before and after proves the plan changed nothing: the hosts' trees under
deploy_root (paths, modes, sizes, mtimes, link targets), both databases (tables, row counts, checksums), and
everything beside stages.ini on this machine (doit's dep file and the run lock, byte for byte, and their
mtimes; no lock file appears) and the app's repository's .git. The tests run in order on one project."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.lab.project import DOIT, PASSWORD_ENV
from tests.lab.rehearsal_migrations import migration


@pytest.fixture(scope="module")
def world(blog_world):
    return blog_world


def files(root: Path) -> dict:
    """Every path under root: type and mode, size, mtime, link target, and a regular file's sha256."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                              os.readlink(p) if p.is_symlink() else None, digest)
    return out


def scan(world) -> dict:
    db = world["mariadb"]
    return {"hosts": [files(h.path("/srv")) for h in world["hosts"]],
            "here": files(world["project"].workdir),
            "source": files(world["repo"].path / ".git"),   # git status refreshes no index
            "dbs": [(db.tables(n), db.row_counts(n), db.checksums(n)) for n in (world["prod"], world["test"])]}


def plan(world, stage: str = "test", password: bool = True, env: dict | None = None) -> dict[str, str]:
    """plan:<stage>, checked to change nothing; {node: what it says (with its detail lines)}. password:
    BLOG_DB_PASSWORD is set (else not in the environment at all)."""
    p = world["project"]
    before = scan(world)
    if password:
        res = p.doit(f"plan:{stage}", env=env)
    else:
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
        res = subprocess.run([*DOIT, f"plan:{stage}"], cwd=p.workdir, env={**env, "STAGES_INI": str(p.ini)},
                             capture_output=True, text=True, timeout=600)
    print(res.stdout, res.stderr)   # shown when a test fails
    assert res.returncode == 0, res.stdout + res.stderr
    after = scan(world)
    assert after == before
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"plan:{stage}: ") and lines[-1].endswith("nothing was changed"), res.stdout
    out: dict[str, str] = {}
    last = None
    for ln in lines[1:-1]:
        word = ln.split()[0] if ln.strip() else ""
        if ln.startswith("  ") and not ln.startswith("   "):
            last = word
            out[last] = ln.strip()[len(word):].strip()
        elif last:
            out[last] += "\n" + ln.strip()
    return out


def rid(link):
    return link.rsplit("/", 1)[-1] if link else None


def test_a_fresh_stage_would_do_everything(world):
    p = world["project"]
    said = plan(world)
    assert said["archive"].startswith("would archive blog-"), said
    assert said["backup:prod"].startswith("would back up prod"), said
    assert said["upload:test"].startswith("would upload blog-") and "not archived yet" in said["upload:test"]
    assert said["build:test"].startswith("would build blog-"), said
    assert said["restore:test"].startswith("would restore"), said
    assert said["migrate:test"].startswith("would rehearse"), said
    assert said["switch:test"].startswith("would switch sites/test:") and "(none) -> blog-" in said["switch:test"]
    assert said["verify:test"].startswith("would run infra-tests")
    # nothing appeared beside stages.ini: no dep file, no lock, no build/
    assert sorted(os.listdir(p.workdir)) == ["stages.ini"]
    # a promotion from a stage that runs nothing yet would stop before its first node
    res = p.doit("plan:staging")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[1].startswith("  promote:staging would stop before its first node: stage test has no release"), \
        res.stdout
    assert all("not checked: promote:staging would stop first" in ln for ln in lines[2:-1]), res.stdout
    assert sorted(os.listdir(p.workdir)) == ["stages.ini"]


def test_after_deploy_every_node_is_up_to_date(world):
    p = world["project"]
    p.ok("deploy:test")
    release = rid(p.link(world["hosts"][0]))
    said = plan(world)
    for node in ("archive", "backup:prod", "upload:test", "build:test", "restore:test", "migrate:test",
                 "switch:test"):
        assert said[node].startswith("up to date"), (node, said)
    assert f"sites/test -> {release}" in said["switch:test"]
    # without the database password here: the same answers, the env file's content alone not compared
    bare = plan(world, password=False)
    assert all(bare[n].startswith("up to date") for n in said if n != "verify:test"), bare
    assert "its env file is not compared: " in bare["build:test"] and PASSWORD_ENV in bare["build:test"], bare


def test_a_new_commit_would_archive_upload_build_and_switch(world):
    p, repo = world["project"], world["repo"]
    old = rid(p.link(world["hosts"][0]))
    repo.commit("a change", {"PLAN_NOTE.txt": "plan\n"})
    said = plan(world)
    assert said["archive"].startswith("would archive"), said
    new = said["archive"].split()[2]
    assert new != old
    assert said["upload:test"].startswith(f"would upload {new}")
    assert said["build:test"].startswith(f"would build {new}")
    assert said["restore:test"].startswith("would restore"), said   # the copy was restored for the old release
    assert said["switch:test"].startswith("would switch sites/test:")
    assert f"{old} -> {new}" in said["switch:test"]


def test_promote_plan_names_pending_migrations_with_the_rehearsals_figures(world):
    p, web1 = world["project"], world["hosts"][0]
    p.ok("deploy:test")
    release = rid(p.link(web1))
    report = web1.path(f"/srv/blog/.deploy/rehearsals/{release}.json").read_text()
    said = plan(world, "staging")
    assert said["upload:staging"].startswith("up to date"), said   # staging runs on the same hosts as test
    migrate = said["migrate:staging"]
    assert migrate.startswith("would migrate prod"), migrate
    names = [m["name"] for m in json.loads(report)["migrations"]]
    assert names and all(n in migrate for n in names), migrate
    assert "write stall" in migrate and "the guard would" in migrate, migrate
    assert said["switch:staging"].startswith("would switch sites/staging:"), said
    # after the promotion, nothing is pending on production
    p.ok("promote:staging")
    said = plan(world, "staging")
    for node in ("upload:staging", "build:staging", "migrate:staging", "switch:staging"):
        assert said[node].startswith("up to date"), (node, said)


def test_promote_plan_reads_whats_pending_on_production_once_the_release_is_built_for_staging(world):
    p, repo = world["project"], world["repo"]
    repo.add_data_migration()
    p.ok("deploy:test")
    said = plan(world, "staging")
    assert "its rehearsal lists 1 migration(s): posts.0004_rehearsed (pending on prod not checked: " in \
        said["migrate:staging"], said
    p.ok("build:staging")
    said = plan(world, "staging")
    migrate = said["migrate:staging"]
    assert migrate.startswith("would migrate prod between two verified backups of it: 1 pending migration(s): "
                              "posts.0004_rehearsed"), migrate
    assert "\nthe guard would pass" in migrate and "staleness not checked" not in migrate, migrate


def test_a_host_that_cannot_be_reached_is_named_and_the_plan_goes_on(world):
    web2 = world["hosts"][1]
    web2.kill()
    try:
        said = plan(world)
    finally:
        web2.start()
    # the archive is here; the hosts' python3 (its wheelhouse is for) is not read from web2
    assert said["archive"].startswith("not checked: build/blog-") and f":{web2.port}" in said["archive"], said
    assert said["backup:prod"].startswith("up to date"), said   # prod's backup host is web1
    for node in ("upload:test", "build:test", "switch:test"):
        assert said[node].startswith("not checked: ") and f"127.0.0.1:{web2.port}" in said[node], (node, said)


def test_promote_plan_says_the_guard_would_refuse_a_flagged_migration_unless_it_is_allowed(world):
    p, repo = world["project"], world["repo"]
    repo.commit("rename", {"posts/migrations/0005_rename_body.py": migration(
        "0004_rehearsed", "        migrations.RenameField('post', 'body', 'text'),\n")})
    p.ok("deploy:test")
    p.ok("build:staging")
    release = rid(p.link(world["hosts"][0]))
    migrate = plan(world, "staging")["migrate:staging"]
    assert "2 pending migration(s): posts.0004_rehearsed, posts.0005_rename_body" in migrate, migrate
    assert "rename_column posts_post" in migrate, migrate   # the rehearsal's flag, in its table
    assert "the guard would refuse: posts.0005_rename_body is unsafe: rename_column" in migrate, migrate
    allowed = plan(world, "staging", env={"DEPLOY_ALLOW_UNSAFE": release})["migrate:staging"]
    assert f"the guard would pass: its flags are accepted by DEPLOY_ALLOW_UNSAFE={release}" in allowed, allowed
