"""The migration rehearsal on PostgreSQL with passfile (no password_env) for both databases, end to end on
two real sshd hosts, the real server and the sample blog's real migrations: the copy's schema and sizes are
read and its writes probed ON THE HOST, through the app's own connection (Django's postgresql backend,
libpq reading PGPASSFILE there), and the report is as good as the tunnel's (each migration's stall, probe
writes, exact sizes, PostgreSQL's kinds); promote:staging is guarded by it. The password never reaches the
deploying machine: not in doit's output, the report, any command line, or the doit process's memory."""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.test_rehearsal_option_file import NEEDLES, doit_watched
from tests.lab.common import NASTY_PASSWORD, CmdlineScan
from tests.lab.postgres import write_passfile
from tests.lab.rehearsal_migrations import STEPS, migration
from tests.lab.sshd import DEPLOY_USER
from tests.lab.world import open_world

# times an index build and its write stall: run alone, not beside another worker (scripts/test)
pytestmark = pytest.mark.solo

# each database's libpq password file, under /srv of every host (the app's libpq reads PGPASSFILE as written)
PASS = {"prod": "/srv/prod.pgpass", "test": "/srv/test.pgpass"}
PASSFILES = {f"database:{db}": {"password_env": None, "passfile": path} for db, path in PASS.items()}
MIGRATIONS = {
    "0004_post_subtitle": migration("0003_populate_post_slug", dict(STEPS)["0004_post_subtitle"]),
    "0005_post_created_index": migration("0004_post_subtitle", "        migrations.AddIndex('post', models.Index("
                                                               "fields=['created'], name='posts_created_idx')),\n"),
}


def pgpass_line(user: str) -> str:
    """Every database of the server (the restore connects to `postgres` too) for this role."""
    escaped = NASTY_PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    return f"127.0.0.1:5432:*:{user}:{escaped}"


@pytest.fixture(scope="module")
def world(postgres, ssh_hosts, tmp_path_factory):
    with open_world(postgres, ssh_hosts, tmp_path_factory.mktemp("passfile"), changes=[PASSFILES]) as world:
        user = world["project"].values["user"]
        for h in world["hosts"]:
            for path in PASS.values():
                write_passfile(h.path(path), pgpass_line(user), owner=DEPLOY_USER)
        world["project"].password = ""      # the deploying machine holds none
        yield world


def release(p) -> str:
    return p.links("sites/test")[0].rsplit("/", 1)[-1]


def watched(p, *args, env=None) -> tuple[int, str, str]:
    """doit with the password nowhere on this machine: output, command lines, its memory."""
    with CmdlineScan() as scan:
        code, out, err, hits = doit_watched(p, *args, env=env)
    assert scan.seen == [] and hits == [], (scan.seen, hits)
    assert not any(n.decode() in out + err for n in NEEDLES)
    return code, out, err


def index_in(world, db: str) -> bool:
    return bool(world["db"].query(db, "SELECT 1 FROM pg_indexes WHERE schemaname = 'public' AND "
                                      "indexname = 'posts_created_idx'"))


def test_first_release_migrates_with_the_password_only_on_the_hosts(world):
    p = world["project"]
    code, out, err = watched(p, "deploy:test")
    assert code == 0, f"{out}\n{err}"
    code, out, err = watched(p, "promote:staging")
    assert code == 0, f"{out}\n{err}"
    assert "posts_post" in world["db"].tables(world["prod"])


def test_the_copy_is_probed_on_the_host_and_an_index_without_concurrently_is_refused(world):
    p, db, prod = world["project"], world["db"], world["prod"]
    db.query(prod, "INSERT INTO posts_post (title, slug, body, created) SELECT 'title ' || g, 's' || g, 'body', "
                   "NOW() FROM generate_series(1, 20000) AS g")
    for name, text in MIGRATIONS.items():
        world["repo"].commit(name, {f"posts/migrations/{name}.py": text, "static/version.txt": name + "\n"})
    p.write(max_age="1s")
    time.sleep(1.1)
    try:
        code, out, err = watched(p, "deploy:test")
    finally:
        p.write(max_age="24h")
    assert code == 0, f"{out}\n{err}"
    rid = release(p)
    text = world["hosts"][0].path(f"/srv/blog/.deploy/rehearsals/{rid}.json").read_text()
    assert not any(n.decode() in text for n in NEEDLES)
    rep = json.loads(text)
    added, index = (next(m for m in rep["migrations"] if m["name"] == f"posts.{n}") for n in MIGRATIONS)
    assert rep["engine"] == "postgresql" and rep["probe"]["runs_on"] == "host"
    assert rep["probe"]["tables"] == ["posts_post"] and rep["probe"]["writes"] > 0, rep["probe"]
    assert any(n.startswith(f"passfile: sizes read and writes probed on {world['hosts'][0].url}")
               for n in rep["notes"]), rep["notes"]
    rows = db.row_counts(prod)["posts_post"]
    assert index["tables"][0] == {"name": "posts_post", "rows": rows, "rows_exact": True,
                                  "mb": index["tables"][0]["mb"]} and index["tables"][0]["mb"] > 1
    assert [(u["kind"], u["table"], u["column"]) for u in index["unsafe"]] == [
        ("index_without_concurrently", "posts_post", "created")]
    assert added["unsafe"] == [] and added["max_write_stall"] is not None and index["max_write_stall"] is not None
    assert index_in(world, world["test"]) and not index_in(world, prod)
    code, out, err = watched(p, "promote:staging")
    assert code != 0 and "is unsafe: index_without_concurrently on posts_post.created" in err, err
    assert not index_in(world, prod)
    code, out, err = watched(p, "promote:staging", env={"DEPLOY_ALLOW_UNSAFE": rid})
    assert code == 0, f"{out}\n{err}"
    assert index_in(world, prod) and "subtitle" in db.columns(prod, "posts_post")
