"""The migration rehearsal with option_file (no password_env) for both databases, end to end on two real
sshd hosts, MariaDB and the sample blog's real migrations: the copy's sizes are read and its writes probed
ON THE HOST, through the app's own connection, and the report is as good as the tunnel's (real stalls per
migration, probe writes, exact sizes); promote:staging is guarded by it. The option file's password
(shell metacharacters, quotes, '#', backslashes) never reaches the deploying machine: not in doit's
output, not in the report, not on any command line, and not in the doit process's memory, read while it
runs (/proc/<pid>/mem)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from tests.lab.common import NASTY_PASSWORD, CmdlineScan
from tests.lab.mariadb import option_file_value
from tests.lab.project import DOIT, PASSWORD_ENV, Project
from tests.lab.rehearsal_migrations import files

# times a table copy and its write stall: run alone, not beside another worker (scripts/test)
pytestmark = pytest.mark.solo

MIGRATIONS = files()
NEEDLES = [NASTY_PASSWORD.encode(), quote(NASTY_PASSWORD, safe="").encode(), option_file_value(NASTY_PASSWORD).encode()]


def memory_hits(pid: int, needles=NEEDLES) -> list[str]:
    """The needles found in the writable memory of process pid (its heap, anonymous maps and stacks)."""
    hits = []
    try:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if not perms.startswith("rw"):
                    continue
                lo, hi = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(lo)
                    data = mem.read(hi - lo)
                except (OSError, ValueError, OverflowError):
                    continue
                hits += [f"{n!r} in {line.strip()}" for n in needles if n in data]
    except (FileNotFoundError, ProcessLookupError):
        pass   # it ended between two looks
    return hits


def doit_watched(p: Project, *args: str, env: dict | None = None) -> tuple[int, str, str, list[str]]:
    """`doit args` as Project.doit runs it, its memory read for the password every few tenths of a second
    until it ends: (exit code, stdout, stderr, what the reads found)."""
    environ = dict(os.environ, STAGES_INI=str(p.ini), **{PASSWORD_ENV: ""}, **(env or {}))
    out, err = p.workdir / "doit.out", p.workdir / "doit.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([*DOIT, *args], cwd=p.workdir, env=environ, stdout=o, stderr=e)
        hits: list[str] = []
        while proc.poll() is None:
            hits += memory_hits(proc.pid)
            time.sleep(0.2)
    text = out.read_text(), err.read_text()
    out.unlink()
    err.unlink()
    return proc.returncode, *text, hits


@pytest.fixture(scope="module")
def world(option_file_world):
    return option_file_world


def release(p) -> str:
    return p.links("sites/test")[0].rsplit("/", 1)[-1]


def report_files(world, rid: str) -> tuple[dict, str]:
    d = world["hosts"][0].path("/srv/blog/.deploy/rehearsals")
    return json.loads((d / f"{rid}.json").read_text()), (d / f"{rid}.md").read_text()


def add(world, name: str) -> None:
    path = f"posts/migrations/{name}.py"
    world["repo"].commit(name, {path: MIGRATIONS[path], "static/version.txt": name + "\n"})


def grow_posts(world, rows: int) -> None:
    db, prod = world["mariadb"], world["prod"]
    if db.row_counts(prod)["posts_post"] == 0:
        db.query(prod, "INSERT INTO posts_post (title, slug, body, created) VALUES "
                       "('a title of some forty characters, padded', 'a-title', 'body', NOW())")
    while (have := db.row_counts(prod)["posts_post"]) < rows:
        db.query(prod, "INSERT INTO posts_post (title, slug, body, created) SELECT title, slug, body, created "
                       f"FROM posts_post LIMIT {min(have, rows - have)}")


def watched_ok(p, *args, env=None) -> str:
    """doit must pass with the password nowhere on this machine: output, command lines, its memory."""
    with CmdlineScan() as scan:
        code, out, err, hits = doit_watched(p, *args, env=env)
    assert code == 0, f"doit {' '.join(args)} failed:\n{out}\n{err}"
    assert scan.seen == [] and hits == [], (scan.seen, hits)
    assert not any(n.decode() in out + err for n in NEEDLES)
    return out


def rehearse_fresh(world) -> tuple[str, dict, str]:
    """deploy:test on a backup of production taken now (backup_max_age 1s); the new release's report."""
    p = world["project"]
    p.write(max_age="1s")
    time.sleep(1.1)
    try:
        out = watched_ok(p, "deploy:test")
    finally:
        p.write(max_age="24h")
    rid = release(p)
    rep, md = report_files(world, rid)
    for text in (json.dumps(rep), md, out):
        assert not any(n.decode() in text for n in NEEDLES)
    return rid, rep, out


def column_types(world) -> dict[str, str]:
    """posts_post's columns in production: {name: DATA_TYPE}."""
    return dict(world["mariadb"].query(None, "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                                             "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'posts_post'",
                                       (world["prod"],)))


def migration(rep: dict, name: str) -> dict:
    return next(m for m in rep["migrations"] if m["name"] == f"posts.{name}")


def test_memory_reads_find_a_password_held_by_a_process():
    """The check used below can fail: a process holding the password (read from stdin) is caught."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; s = sys.stdin.readline(); time.sleep(60)"],
                            stdin=subprocess.PIPE)
    try:
        proc.stdin.write(NASTY_PASSWORD.encode() + b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while not memory_hits(proc.pid, NEEDLES[:1]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert memory_hits(proc.pid, NEEDLES[:1])
    finally:
        proc.kill()
        proc.wait()


def test_first_release_and_its_promotion(world):
    p = world["project"]
    watched_ok(p, "deploy:test")
    watched_ok(p, "promote:staging")
    assert "posts_post" in world["mariadb"].tables(world["prod"])


def test_an_instant_add_field_is_probed_on_the_host_and_passes_the_guard(world):
    """0004 adds two nullable columns to posts_post (200000 rows): instant in MariaDB, so the probe's
    writes on the host go on; the guard lets production have it without any override."""
    db = world["mariadb"]
    grow_posts(world, 200_000)
    add(world, "0004_post_subtitle")
    rid, rep, _ = rehearse_fresh(world)
    added = migration(rep, "0004_post_subtitle")
    assert rep["probe"]["runs_on"] == "host" and rep["probe"]["tables"] == ["posts_post"]
    assert rep["probe"]["writes"] > 0 and rep["probe"]["errors"] == [], rep["probe"]
    assert isinstance(added["max_write_stall"], float) and added["max_write_stall"] < 1.0, added
    rows = db.row_counts(world["prod"])["posts_post"]
    assert added["tables"] == [{"name": "posts_post", "rows": rows, "rows_exact": True,
                                "mb": added["tables"][0]["mb"]}] and added["tables"][0]["mb"] > 1
    assert added["seconds"] > 0 and added["unsafe"] == []
    assert any(n.startswith("option_file: sizes read and writes probed on ") for n in rep["notes"]), rep["notes"]
    out = watched_ok(world["project"], "promote:staging")
    assert "posts.0004_post_subtitle" in out
    assert "subtitle" in column_types(world)


def test_a_table_copy_stalls_the_hosts_probe_and_the_guard_needs_the_release_named(world):
    """0005 turns title VARCHAR into LONGTEXT: a table copy of 200000 rows, which blocks the probe's writes
    on the host for its whole length. Refused for alter_type; accepted when the release is named."""
    p, db = world["project"], world["mariadb"]
    add(world, "0005_post_title_text")
    rid, rep, _ = rehearse_fresh(world)
    rebuilt = migration(rep, "0005_post_title_text")
    assert [m["name"] for m in rep["migrations"]] == ["posts.0005_post_title_text"]
    assert rep["probe"]["runs_on"] == "host" and rep["probe"]["writes"] >= 3, rep["probe"]
    assert rebuilt["seconds"] > 0.3 and rebuilt["max_write_stall"] > max(0.2, 0.5 * rebuilt["seconds"]), rebuilt
    assert rebuilt["max_write_stall"] <= rebuilt["seconds"] + 1.0, rebuilt   # the host's clock, not a stray one
    assert rebuilt["tables"][0]["rows"] == db.row_counts(world["prod"])["posts_post"]
    code, out, err, hits = doit_watched(p, "promote:staging")
    assert code != 0 and "alter_type" in err and hits == [], err
    assert column_types(world)["title"] == "varchar"         # production untouched
    watched_ok(p, "promote:staging", env={"DEPLOY_ALLOW_UNSAFE": rid})
    assert column_types(world)["title"] == "longtext"
