"""The rehearsal of migrations that build on each other while both are pending, end to end (real sshd hosts,
real MariaDB, the sample blog's real Django migrations): 0004 creates posts_tag, 0005 adds an indexed column
to it and alters its foreign key. MySQL's schema editor reads the live database to write 0005's SQL, and
posts_tag does not exist before 0004 ran: `manage.py migrate` applies the pair, so the rehearsal must too."""
from __future__ import annotations

import json

import pytest

from tests.lab.rehearsal_migrations import migration

TAG = migration("0003_populate_post_slug", "        migrations.CreateModel('Tag', [\n"
                "            ('id', models.BigAutoField(primary_key=True)),\n"
                "            ('name', models.CharField(max_length=40)),\n"
                "            ('post', models.ForeignKey('posts.post', models.CASCADE))]),\n")
TAG_ALTER = migration("0004_tag", "        migrations.AddField('tag', 'slug', models.SlugField(max_length=40, "
                                  "null=True)),\n"
                                  "        migrations.AlterField('tag', 'post', models.ForeignKey('posts.post', "
                                  "models.CASCADE, null=True)),\n")


@pytest.fixture(scope="module")
def world(blog_world):
    return blog_world


def nullable(world, db: str) -> dict[str, str]:
    return dict(world["mariadb"].query(
        None, "SELECT COLUMN_NAME, IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
              "TABLE_NAME = 'posts_tag'", (db,)))


def test_a_table_created_and_altered_by_two_pending_migrations_is_rehearsed_and_promoted(world):
    p, repo, host = world["project"], world["repo"], world["hosts"][0]
    repo.commit("tags", {"posts/migrations/0004_tag.py": TAG, "posts/migrations/0005_tag_alter.py": TAG_ALTER,
                         "static/version.txt": "tags\n"})
    res = p.doit("deploy:test")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    release = p.links("sites/test")[0].rsplit("/", 1)[-1]
    rep = json.loads(host.path(f"/srv/blog/.deploy/rehearsals/{release}.json").read_text())
    created, altered = rep["migrations"][-2:]
    assert [created["name"], altered["name"]] == ["posts.0004_tag", "posts.0005_tag_alter"]
    # 0005's SQL as migrate executed it on the copy (the foreign key dropped, changed and made again)
    assert "ALTER TABLE `posts_tag` MODIFY `post_id` bigint NULL;" in altered["sql"], altered["sql"]
    assert any(s.startswith("CREATE INDEX") and "(`slug`)" in s for s in altered["sql"]), altered["sql"]
    assert altered["tables"] == [{"name": "posts_tag", "rows": 0, "mb": 0.0, "created": True}]
    assert altered["unsafe"] == [] and altered["seconds"] > 0
    assert any(n.startswith("posts.0005_tag_alter: its SQL could not be collected") for n in rep["notes"]), rep
    assert nullable(world, world["test"]) == {"id": "NO", "name": "NO", "post_id": "YES", "slug": "YES"}
    p.ok("promote:staging")   # the guard takes that report: production gets the pair
    assert nullable(world, world["prod"])["post_id"] == "YES"
