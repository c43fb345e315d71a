"""A Mercurial source and sqlite databases on an SSH host: the whole chain, test -> staging -> prod."""
from __future__ import annotations

import sqlite3

from tests.lab.apprepo import AppRepo
from tests.lab.project import Project, tree
from tests.lab.stages_ini import SQLITE, stages_ini

INI = stages_ini(SQLITE, {"project": {"name": "hgblog", "scm": "auto", "keep_releases": None, "shared_dirs": None,
                                      "stage_dirs": None},
                          "stage:staging": {"link": None}})


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
