"""The rehearsal guard as a hostile tester meets it, and the backups it stands on: real sshd hosts, real
MariaDB and PostgreSQL (engine_world: every test once on each), the sample blog's real Django migrations.
The tests run in order on one project.

web1 runs test (the rehearsal and its report); staging runs on web1 and web2; production's backups live on
web2 (backup_host), outside the test stage. A tester who can write on web1 can rewrite the report, not
what the rehearsal recorded of it: here (build/rehearsals/) and on web2."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.lab.project import Project
from tests.lab.rehearsal_migrations import migration

SUBTITLE = "0004_post_subtitle"
DROP = "0005_drop_subtitle"
VIEWS = "0006_post_views"
FILES = {
    SUBTITLE: migration("0003_populate_post_slug", "        migrations.AddField('post', 'subtitle', "
                                                   "models.CharField(max_length=100, null=True)),\n"),
    DROP: migration(SUBTITLE, "        migrations.RemoveField('post', 'subtitle'),\n"),
    VIEWS: migration(DROP, "        migrations.AddField('post', 'views', models.IntegerField(db_default=0)),\n"),
}
BROKEN = migration("0099_missing", "        migrations.AddField('post', 'x', models.IntegerField(null=True)),\n")


@pytest.fixture(scope="module")
def world(engine_world, tmp_path_factory):
    blog_world = engine_world
    p, (web1, web2) = blog_world["project"], blog_world["hosts"]
    p.write(test_hosts=web1.url, prod_extra=f"backup_host = {web2.url}\n", project_extra="keep_backups = 2\n")
    # another deploying machine of the same team: the same stages.ini, its own directory (build/, dep file)
    other = tmp_path_factory.mktemp("other-machine")
    p2 = Project(other, blog_world["repo"].path, blog_world["hosts"], Path(p.values["ssh_config"]),
                 password=p.password, template=p.template)
    p2.values = p.values   # one dict: a change of the team's stages.ini is written on both machines
    p2.write()
    return {**blog_world, "other": p2, "web1": web1, "web2": web2}


def report_path(world, rid: str) -> Path:
    return world["web1"].path(f"/srv/blog/.deploy/rehearsals/{rid}.json")


def live_release(world) -> str:
    return world["project"].link(world["web1"]).rsplit("/", 1)[-1]


def add(world, name: str, text: str | None = None) -> None:
    world["repo"].commit(name, {f"posts/migrations/{name}.py": text or FILES[name], "static/version.txt": name})


def columns(world) -> list[str]:
    return world["db"].columns(world["prod"], "posts_post")


def applied(world) -> set[str]:
    return world["db"].applied(world["prod"])


def prod_backups(world) -> list[dict]:
    return [m for m in Project.backups(world["web2"]) if m["database"] == "prod"]


def untouched(world):
    """Production as it is now, and a check that a refused run left it so (schema, migrations, backups)."""
    before = (columns(world), applied(world), [m["name"] for m in prod_backups(world)])

    def check():
        assert (columns(world), applied(world), [m["name"] for m in prod_backups(world)]) == before
    return check


def one_line(res, *words) -> str:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr
    line = next(ln for ln in res.stderr.splitlines() if "migrate:staging: refused" in ln)
    for w in words:
        assert w in line, line
    return line


def test_a_rehearsal_records_its_report_here_and_on_the_databases_backup_host(world):
    p = world["project"]
    p.ok("deploy:test")
    rid = live_release(world)
    sha = hashlib.sha256(report_path(world, rid).read_bytes()).hexdigest()
    mine = json.loads((p.workdir / "build" / "rehearsals" / f"{rid}.json").read_text())
    theirs = json.loads(world["web2"].path(f"/srv/blog/.deploy/rehearsals/{rid}.record.json").read_text())
    assert mine == theirs and mine["sha256"] == sha and mine["release"] == rid
    assert mine["host"] == world["web1"].url
    assert mine["backup"] == json.loads(report_path(world, rid).read_text())["backup"]
    p.ok("promote:staging")
    assert "posts_post" in world["db"].tables(world["prod"])


def test_a_swapped_report_is_refused_and_production_is_untouched(world):
    """An older release's report copied over this release's, as it is and with its release id edited: an
    older release rehearsed on the same production (nothing pending: no flags), so that only the report's
    identity and its recorded sha256 tell."""
    p, web1 = world["project"], world["web1"]
    add(world, SUBTITLE)
    p.ok("deploy:test")
    p.ok("promote:staging")
    assert "subtitle" in columns(world)
    world["repo"].commit("static only", {"static/version.txt": "r2b"})
    p.ok("deploy:test")
    older = live_release(world)
    assert json.loads(report_path(world, older).read_text())["migrations"] == []
    add(world, DROP)
    p.ok("deploy:test")
    rid = live_release(world)
    genuine = report_path(world, rid).read_bytes()
    world["genuine"] = genuine
    assert json.loads(genuine)["migrations"][0]["unsafe"][0]["kind"] == "drop_column"
    prod = untouched(world)
    web1.write_file(f"/srv/blog/.deploy/rehearsals/{rid}.json", report_path(world, older).read_bytes())
    res = p.doit("promote:staging")
    prod()
    line = one_line(res, f"the report is of release '{older}', not of {rid}", "run doit deploy:test again")
    assert f"{rid}.refused.json" in line
    # the same, its release id edited to this one: the sha256 the rehearsal recorded tells
    forged = report_path(world, older).read_text().replace(older, rid).encode()
    web1.write_file(f"/srv/blog/.deploy/rehearsals/{rid}.json", forged)
    res = p.doit("promote:staging")
    prod()
    sha = hashlib.sha256(genuine).hexdigest()[:12]
    one_line(res, "the report differs from the one its rehearsal wrote", hashlib.sha256(forged).hexdigest()[:12],
             f"this machine's build/rehearsals/{rid}.json: sha256 {sha}",
             f"{world['web2'].url} (backup host of prod): sha256 {sha}")
    assert "subtitle" in columns(world)


def test_an_edited_report_is_refused_even_with_a_forged_record_beside_it(world):
    """`"unsafe": []` written into the report, and a record of its new sha256 put on web1 (where the tester
    can write; the guard never asks web1 for one)."""
    p, web1, rid = world["project"], world["web1"], live_release(world)
    report = json.loads(world["genuine"])
    report["migrations"][0]["unsafe"] = []
    edited = json.dumps(report, indent=1).encode() + b"\n"
    web1.write_file(f"/srv/blog/.deploy/rehearsals/{rid}.json", edited)
    record = dict(json.loads((p.workdir / "build" / "rehearsals" / f"{rid}.json").read_text()),
                  sha256=hashlib.sha256(edited).hexdigest())
    web1.write_file(f"/srv/blog/.deploy/rehearsals/{rid}.record.json", json.dumps(record))
    prod = untouched(world)
    res = p.doit("promote:staging")
    one_line(res, "the report differs from the one its rehearsal wrote")
    prod()
    assert "subtitle" in columns(world) and not report_path(world, rid).exists()
    # the genuine report back: the guard trusts it, and judges it (drop_column is unsafe)
    web1.write_file(f"/srv/blog/.deploy/rehearsals/{rid}.json", world["genuine"])
    res = p.doit("promote:staging")
    one_line(res, f"{DROP} is unsafe: drop_column on posts_post.subtitle")
    prod()


def test_another_machine_of_the_team_is_vouched_for_by_the_databases_backup_host(world):
    """The rehearsal ran from the first machine; the second has no record of its own. web2 (production's
    backup host, outside the test stage) recorded the report's sha256: that is enough."""
    other, rid = world["other"], live_release(world)
    assert not (other.workdir / "build" / "rehearsals" / f"{rid}.json").exists()
    res = other.ok("promote:staging", env={"DEPLOY_ALLOW_UNSAFE": rid})
    assert "its rehearsal's flags accepted by DEPLOY_ALLOW_UNSAFE" in res.stdout, res.stdout
    assert "subtitle" not in columns(world) and f"posts.{DROP}" in applied(world)


def test_without_a_witness_off_the_test_hosts_only_this_machines_own_rehearsal_counts(world):
    """Production's backup host left to its default, web1: a host of the test stage, where a tester could
    write the record too. Then the guard trusts only a report whose rehearsal this machine ran, and says so."""
    p, other = world["project"], world["other"]
    add(world, VIEWS)
    p.ok("deploy:test")
    rid = live_release(world)
    p.write(prod_extra="")
    other.write()
    try:
        prod = untouched(world)
        res = other.doit("promote:staging")
        one_line(res, "nothing this run can trust recorded that rehearsal",
                 f"this machine's build/rehearsals/{rid}.json: no record",
                 f"{world['web1'].url} (backup host of prod): not counted (a host of stage test, where the report is)",
                 "run doit deploy:test again")
        prod()
    finally:
        p.write(prod_extra=f"backup_host = {world['web2'].url}\n")
        other.write()
    # that machine rehearses itself (the report was set aside): now it has its own record
    other.ok("deploy:test")
    assert (other.workdir / "build" / "rehearsals" / f"{rid}.json").exists()
    other.ok("promote:staging")
    assert "views" in columns(world)


def test_the_rehearsal_uses_the_backup_restore_printed_and_says_why(world):
    """After a promotion the newest backup of production is its "after" backup. A release without
    migrations: restore:test loads that one and says why; the rehearsal runs on that copy (no backup of its
    own) and names it; a second deploy:test does nothing."""
    p = world["project"]
    after = max(prod_backups(world), key=lambda m: m["epoch"])    # of the last test's promotion
    assert after["reason"].startswith("after migrate:staging ")
    world["repo"].commit("static only", {"static/version.txt": "static only"})
    taken = len(prod_backups(world))
    res = p.ok("deploy:test")
    rid = live_release(world)
    assert len(prod_backups(world)) == taken          # no backup behind restore:test's back
    assert json.loads(report_path(world, rid).read_text())["backup"] == after["name"]
    restore = next(ln for ln in res.stdout.splitlines() if ln.startswith("   test := "))
    assert restore.startswith(f"   test := {after['file']} (the newest verified backup of prod"), restore
    assert after["reason"] in restore and "it held" in restore, restore
    assert f"rehearsing on test := {after['name']} (the copy restore:test made for {rid}" in res.stdout, res.stdout
    again = p.ok("deploy:test")
    assert [ln for ln in again.stdout.splitlines() if ln.startswith(".  ")] == [".  verify:test"], again.stdout


def test_retention_never_deletes_what_a_metadata_file_names_outside_db_backup(world):
    """keep_backups = 2, metadata planted in web2's db_backup/ naming the release log (relative and absolute),
    one of them the newest of all: backup:prod --force keeps the log, says what it ignored, and restore:test
    restores the real newest backup."""
    p, web2 = world["project"], world["web2"]
    log = web2.path("/srv/blog/.deploy/releases.jsonl")
    before = log.read_bytes()
    assert before
    fake = {"database": "prod", "status": "verified", "engine": world["engine"], "sha256": "0" * 64, "tables": {}}
    planted = {"evil-rel": (0.0, "../.deploy/releases.jsonl"), "evil-abs": (1.0, "/srv/blog/.deploy/releases.jsonl"),
               "evil-new": (4e9, "../.deploy/releases.jsonl")}
    for name, (epoch, file) in planted.items():
        web2.write_file(f"/srv/blog/db_backup/{name}.json",
                        json.dumps({**fake, "name": name, "file": file, "epoch": epoch, "time": "x"}), 0o600)
    res = p.ok("backup:prod", "--force")
    assert log.read_bytes() == before
    for name in planted:
        assert f"{name}.json: ignored: its \"file\"" in res.stdout, res.stdout
        assert web2.path(f"/srv/blog/db_backup/{name}.json").exists()   # reported, not deleted either
    routine = [m for m in prod_backups(world) if not m.get("reason", "").startswith(("before", "after"))
               and m["name"] not in planted]
    assert len(routine) <= 2
    newest = max((m for m in prod_backups(world) if m["name"] not in planted), key=lambda m: m["epoch"])
    res = p.ok("restore:test")
    assert f"test := {newest['file']}" in res.stdout, res.stdout
    assert log.read_bytes() == before
    for name in planted:
        web2.path(f"/srv/blog/db_backup/{name}.json").unlink()


def test_a_broken_migration_graph_shows_djangos_own_error(world):
    p, repo = world["project"], world["repo"]
    link = p.link(world["web1"])
    repo.commit("broken", {"posts/migrations/0100_broken.py": BROKEN})
    try:
        res = p.doit("deploy:test")
        assert res.returncode != 0 and "Traceback" not in res.stderr
        line = next(ln for ln in res.stderr.splitlines() if "migrate:test" in ln)
        assert "NodeNotFoundError" in line and "0099_missing" in line and "Terminated" not in line, line
        assert p.link(world["web1"]) == link
    finally:
        repo._run("git", "reset", "-q", "--hard", "HEAD~1")
