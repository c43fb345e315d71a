"""Three stages.ini values that once ran a command on the deploying machine, destroyed the release log, or
dropped production's database from deploy:test; and the messages that sent users the wrong way. Real sshd
hosts, real MariaDB: each test asserts on what is (not) on the hosts, in the workdir and in the database."""
from __future__ import annotations

import os
import shutil
import signal

import pytest

from tests.lab.sshd import mount_ns, pids_in_mount_ns
from tests.lab.world import deploy_with_test_db_as_prod


@pytest.fixture(scope="module")
def world(blog_world):
    blog_world["project"].ok("deploy:test")   # a first release, a release log, a prod backup
    blog_world["project"].ok("promote:staging")   # production's schema
    return blog_world


def one_error_line(res) -> str:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def snapshot(p, world):
    return {"links": p.links("sites/test"), "logs": [p.log(h) for h in world["hosts"]],
            "prod": world["mariadb"].checksums(world["prod"]), "test": world["mariadb"].checksums(world["test"])}


def test_an_ssh_option_in_hosts_runs_nothing_here(world, tmp_path):
    p = world["project"]
    before = snapshot(p, world)
    marker = p.workdir / "x"
    p.write(test_hosts="ssh://-oProxyCommand=touch${IFS}x@127.0.0.1:22")
    try:
        line = one_error_line(p.doit("deploy:test"))
    finally:
        p.write(test_hosts=", ".join(h.url for h in world["hosts"]))
    assert "[stage:test] hosts:" in line and "may not start with '-'" in line, line
    assert not marker.exists() and not (tmp_path / "x").exists()
    assert snapshot(p, world) == before


def test_a_link_into_the_release_log_is_refused_and_the_log_kept(world):
    p = world["project"]
    before = snapshot(p, world)
    text = p.ini.read_text()
    p.ini.write_text(text.replace("[stage:test]\n", "[stage:test]\nlink = .deploy/releases.jsonl\n"))
    try:
        line = one_error_line(p.doit("deploy:test"))
    finally:
        p.ini.write_text(text)
    assert "[stage:test] link:" in line and "reserved" in line, line
    assert snapshot(p, world) == before
    for h in world["hosts"]:
        log = h.path("/srv/blog/.deploy/releases.jsonl")
        assert log.is_file() and not log.is_symlink()


def test_a_test_database_that_is_production_is_refused_at_load(world):
    p, db = world["project"], world["mariadb"]
    before = snapshot(p, world)
    text = p.ini.read_text()
    p.ini.write_text(text.replace(f"name = {world['test']}", f"name = {world['prod']}").replace(
        "[database:test]\nengine = mysql\nhost = 127.0.0.1", "[database:test]\nengine = mysql\nhost = localhost"))
    try:
        line = one_error_line(p.doit("deploy:test"))
    finally:
        p.ini.write_text(text)
    assert "[database:test] name:" in line and "same database as [database:prod]" in line, line
    assert snapshot(p, world) == before and "django_migrations" in db.tables(world["prod"])


def test_the_restore_step_asks_the_server_before_it_drops(world):
    """Through a port forward the config cannot tell the test database from production; the server can."""
    p, db = world["project"], world["mariadb"]
    db.query(world["prod"], "INSERT INTO posts_post (title, slug, body, created) VALUES ('live', 'live', 'x', NOW())")
    before = snapshot(p, world)
    tables = db.tables(world["prod"])
    res = deploy_with_test_db_as_prod(world, 3306)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "restore:test: refused: [database:test] reaches the same database as [database:prod]" in res.stderr
    after = snapshot(p, world)
    assert after["prod"] == before["prod"] and db.tables(world["prod"]) == tables
    assert after["links"] == before["links"]


def test_a_full_disk_during_upload_says_so(world):
    p, repo, web2 = world["project"], world["repo"], world["hosts"][1]
    before = p.links("sites/test")
    repo.commit("full", {"static/version.txt": "full\n", "static/noise.txt": os.urandom(150_000).hex()})
    arts = "/srv/blog/.deploy/artifacts"   # 64 KiB there: the archive (~150 KiB) does not fit
    web2.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0777", "tmpfs", arts], user=None, check=True)
    try:
        res = p.doit("deploy:test")
    finally:
        web2.run(["umount", arts], user=None, check=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert f"{web2.url}: upload: the host is out of disk space in {arts}" in res.stderr, res.stderr
    assert "free some space" in res.stderr
    assert p.links("sites/test") == before
    p.ok("deploy:test")
    assert p.links("sites/test")[0] != before[0]


def test_a_deploy_root_the_user_cannot_write_says_by_whom_it_is_owned(world, clean_ssh_hosts):
    p, web1 = world["project"], world["hosts"][0]
    try:
        for h in world["hosts"]:
            (h.root / "blog").mkdir()   # made by root, 0755: the deploy user cannot write in it
            os.chmod(h.root / "blog", 0o755)
        res = p.doit("deploy:test")
        assert res.returncode != 0 and "Traceback" not in res.stderr
        assert "locked by" not in res.stderr and "unlock" not in res.stderr, res.stderr
        assert ("cannot write /srv/blog/.deploy: /srv/blog is owned by root (mode 755) and the login user "
                "deploy cannot write there") in res.stderr, res.stderr
        assert list((web1.root / "blog").iterdir()) == []
    finally:
        for h in world["hosts"]:
            shutil.rmtree(h.root / "blog", ignore_errors=True)
    p.ok("deploy:test")


def test_a_hung_host_is_one_line_naming_it(world):
    p, repo, web2 = world["project"], world["repo"], world["hosts"][1]
    repo.commit("hung", {"static/version.txt": "hung\n"})
    before = p.links("sites/test")
    # every process of the host stops: it accepts TCP (the kernel does) and never answers
    hung = [pid for pid in pids_in_mount_ns(mount_ns(web2.pid)) if pid != os.getpid()]
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)
    try:
        res = p.doit("deploy:test", timeout=300)
    finally:
        for pid in hung:
            os.kill(pid, signal.SIGCONT)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: ") and web2.url in errors[0], res.stderr
    assert p.links("sites/test") == before


def test_scm_git_on_a_directory_that_is_no_repository(world, tmp_path):
    p = world["project"]
    plain = tmp_path / "plain"
    shutil.copytree(world["repo"].path, plain, ignore=shutil.ignore_patterns(".git"))
    text = p.ini.read_text()
    p.ini.write_text(text.replace(f"source = {world['repo'].path}", f"source = {plain}\nscm = git"))
    try:
        line = one_error_line(p.doit("deploy:test"))
    finally:
        p.ini.write_text(text)
    assert f"source {plain} is no git repository (scm = git)" in line, line
