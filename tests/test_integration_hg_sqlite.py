"""A Mercurial source and sqlite databases on an SSH host: the whole chain, test -> staging -> prod."""
from __future__ import annotations

import sqlite3

from apprepo import AppRepo
from project import Project, tree

INI = """\
[project]
name = hgblog
source = {source}
scm = auto
deploy_root = /srv/blog
ssh_config = {ssh_config}
build_command = python manage.py collectstatic --noinput

[database:prod]
engine = sqlite
path = /srv/blog/db/prod.sqlite3

[database:test]
engine = sqlite
path = /srv/blog/db/test.sqlite3

[stage:test]
hosts = {hosts}
settings = blog.settings.test
database = test
restore_from = prod

[stage:staging]
hosts = {hosts}
settings = blog.settings.prod
database = prod
promote_from = test

[stage:prod]
hosts = {hosts}
link = sites/current
settings = blog.settings.prod
database = prod
promote_from = staging
"""


def test_hg_source_and_sqlite_through_every_stage(ssh_hosts, tmp_path):
    ssh_hosts.reset()
    web1 = ssh_hosts["web1"]
    repo = AppRepo(tmp_path / "blog", scm="hg")
    (tmp_path / "work").mkdir()
    p = Project(tmp_path / "work", repo.path, [web1], ssh_hosts.ssh_config, template=INI)
    web1.run(["sh", "-c", "mkdir -p /srv/blog/db && : > /srv/blog/db/prod.sqlite3"])
    p.ok("deploy:test")
    node = repo._run("hg", "log", "-r", ".", "--template", "{node}")
    rid = p.link(web1, "sites/test").rsplit("/", 1)[1]
    assert rid.startswith("hgblog-") and rid.endswith(node[:12])
    assert web1.path(f"/srv/blog/releases/{rid}/REVISION").read_text().strip() == node
    assert not web1.path(f"/srv/blog/releases/{rid}/.hg_archival.txt").exists()
    p.ok("promote:staging")
    with sqlite3.connect(web1.path("/srv/blog/db/prod.sqlite3")) as con:
        con.execute("INSERT INTO posts_post (title, slug, body, created) VALUES ('hello', 'hello', 'b', '2026-01-01')")
    repo.add_data_migration()
    p.ok("deploy:test")  # backup:prod is fresh (24h): the test copy comes from the after-migration backup
    p.ok("promote:staging")
    with sqlite3.connect(web1.path("/srv/blog/db/prod.sqlite3")) as con:
        assert con.execute("SELECT body FROM posts_post").fetchall() == [("b [rehearsed]",)]
    p.ok("promote:prod")
    assert p.link(web1, "sites/current") == p.link(web1, "sites/test")
    before = tree(web1.root)
    p.ok("promote:prod")
    assert tree(web1.root) == before
    backups = [b for b in p.backups(web1) if b["database"] == "prod"]
    assert all(b["status"] == "verified" and b["file"].endswith(".sqlite3.gz") for b in backups)
    assert [b["reason"].split()[0] for b in backups[-2:]] == ["before", "after"]
