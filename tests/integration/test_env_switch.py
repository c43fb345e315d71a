"""A build never rewrites the live release's env file in place (issue #16, item 2), and the weak points found
with it: a changed environment is a new env file that goes live only by the switch (and goes back with it);
a changed build_command builds again, never in place on the live release; a planted `sites -> /outside`
symlink is refused, never followed; no temporary link is left behind. Real sshd hosts, real MariaDB, the
real blog app (the reload records the settings it was given)."""
from __future__ import annotations

import os
import time

import pytest

from tests.lab.health import HealthServer
from tests.lab.mariadb import Forward
from tests.lab.project import tree
from tests.lab.stages_ini import INI, stages_ini

RELOAD = ("reload_command = sh -c 'echo \"${PWD##*/} $DJANGO_SETTINGS_MODULE\" >> "
          "/srv/blog/shared/reloads-$STAGE'\n")
MARKS = "/srv/blog/shared/builds"


@pytest.fixture(scope="module")
def world(blog_world):
    p = blog_world["project"]
    health = HealthServer()
    p.write(project_extra=RELOAD, prod_stage_extra=f"health_url = http://{{host}}:{health.port}/health/\n")
    for cmd in ("deploy:test", "promote:staging", "promote:prod"):
        p.ok(cmd)
    yield {**blog_world, "health": health}
    health.stop()


def rid(link):
    return link.rsplit("/", 1)[-1] if link else None


def reloads(host, stage: str) -> list[str]:
    f = host.path(f"/srv/blog/shared/reloads-{stage}")
    return f.read_text().splitlines() if f.exists() else []


def live_env(host, stage: str, link: str) -> tuple[bytes, int, int]:
    """What an app server loads for the stage (shared/<stage>.env through the link): bytes, inode, mtime."""
    target = os.path.realpath(host.path(f"/srv/blog/shared/{stage}.env"))
    own = host.path(f"/srv/blog/{link}/.deploy-env/{stage}.env")
    st = own.stat()
    assert os.path.realpath(own) == target or os.path.samefile(own, target)
    return own.read_bytes(), st.st_ino, st.st_mtime_ns


def every_env(host) -> dict[str, tuple[bytes, int]]:
    return {str(f.relative_to(host.root)): (f.read_bytes(), f.stat().st_ino)
            for f in host.root.glob("blog/releases/*/.deploy-env/*.env")}


def test_a_refused_deploy_leaves_every_live_env_byte_identical(world):
    """[database:test] pointed at production through a port forward (the config cannot tell): deploy:test of
    the release test runs is refused at the restore step, and the env file that release runs with is
    untouched (its app would reach production)."""
    p, hosts = world["project"], world["hosts"]
    p.ok("backup:prod", "--force")     # a newer backup: restore:test is not up to date, so it runs
    before = [live_env(h, "test", "sites/test") for h in hosts]
    envs = [every_env(h) for h in hosts]
    fwd = Forward()
    text = p.ini.read_text()
    p.ini.write_text(text.replace(f"name = {world['test']}", f"name = {world['prod']}\nport = {fwd.port}"))
    try:
        res = p.doit("deploy:test")
    finally:
        p.ini.write_text(text)
        fwd.close()
    assert res.returncode != 0 and "restore:test: refused" in res.stderr, res.stderr
    for h, b, e in zip(hosts, before, envs):
        assert live_env(h, "test", "sites/test") == b
        assert {k: v for k, v in every_env(h).items() if k in e} == e     # no env file rewritten; new ones only
    p.ok("deploy:test")
    assert [live_env(h, "test", "sites/test") for h in hosts] == before   # the same env: nothing to switch


def test_promoting_the_same_release_with_changed_settings_switches_its_env(world):
    p, hosts, health = world["project"], world["hosts"], world["health"]
    live = rid(p.links("sites/current")[0])
    assert rid(p.links("sites/staging")[0]) == live
    before = [live_env(h, "prod", "sites/current") for h in hosts]
    counts = [len(reloads(h, "prod")) for h in hosts]
    # a broken env for prod: its reload fails, the switch is undone, the live env is back byte for byte
    p.write(prod_stage_extra=f"health_url = http://{{host}}:{health.port}/health/\n"
                             "reload_command = sh -c '[ \"$DJANGO_SETTINGS_MODULE\" != blog.settings.test ]'\n")
    p.template = stages_ini({"stage:prod": {"settings": "blog.settings.test"}})
    p.write()
    res = p.doit("promote:prod")
    assert res.returncode != 0 and "back on its previous release" in res.stderr, res.stderr
    assert [rid(x) for x in p.links("sites/current")] == [live, live]
    assert [live_env(h, "prod", "sites/current") for h in hosts] == before
    # the same change with a reload that works: the new env goes live by the switch, reloaded, checked, logged
    p.write(prod_stage_extra=f"health_url = http://{{host}}:{health.port}/health/\n")
    t0 = time.time()
    res = p.ok("promote:prod")
    assert "switch:prod" in res.stdout, res.stdout
    for h, (data, ino, _), n in zip(hosts, before, counts):
        now = live_env(h, "prod", "sites/current")
        assert b"DJANGO_SETTINGS_MODULE=blog.settings.test\n" in now[0] and now[1] != ino
        assert reloads(h, "prod")[n:] == [f"{live} blog.settings.test"]
        last = [r for r in p.log(h) if r["stage"] == "prod"][-1]
        assert (last["release"], last["result"]) == (live, "ok")
    assert health.since(t0) >= len(hosts)
    assert "switch:prod" not in p.ok("promote:prod").stdout.replace("-- switch:prod", "")  # now up to date
    p.template = INI
    p.write(project_extra=RELOAD, prod_stage_extra=f"health_url = http://{{host}}:{health.port}/health/\n")
    p.ok("promote:prod")
    assert [b"blog.settings.prod" in live_env(h, "prod", "sites/current")[0] for h in hosts] == [True, True]


def test_a_changed_build_command_builds_again_but_never_in_place_on_the_live_release(world):
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    live = rid(p.links("sites/test")[0])
    marks = [h.path(MARKS) for h in hosts]
    marking = stages_ini({"project": {
        "build_command": f"sh -c 'python manage.py collectstatic --noinput && echo $STAGE >> {MARKS}'"}})
    p.template = marking
    try:
        p.write()
        before = [tree(h.root / "blog" / "releases" / live) for h in hosts]
        res = p.doit("build:test")        # the release live on test: refused, nothing runs in it
        assert res.returncode != 0 and "build_command" in res.stderr and "live" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
        assert not any(m.exists() for m in marks)
        assert [tree(h.root / "blog" / "releases" / live) for h in hosts] == before
        # a new release built with one command, then the command changes: build:test runs it again
        p.template = INI
        p.write()
        repo.commit("rebuilt", {"static/version.txt": "rebuilt\n"})
        p.ok("archive", "upload:test", "build:test")
        assert not any(m.exists() for m in marks)
        p.template = marking
        p.write()
        p.ok("build:test")
        assert [m.read_text() for m in marks] == ["test\n", "test\n"]
        p.ok("deploy:test")
        assert rid(p.links("sites/test")[0]) != live
    finally:
        p.template = INI
        p.write()


def test_a_planted_sites_symlink_is_refused_and_never_followed(world):
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    web2 = hosts[1]
    sites, outside = web2.path("/srv/blog/sites"), web2.path("/srv/outside")
    web2.run(["sh", "-c", "cp -a /srv/blog/sites /srv/outside && rm -rf /srv/blog/sites && "
                          "ln -s /srv/outside /srv/blog/sites"], check=True)
    try:
        seen = tree(outside)
        res = p.ok("status")
        row = next(ln for ln in res.stdout.splitlines() if ln.startswith("test "))
        assert "agree" not in row and "/srv/blog/sites" in row and "127.0.0.1" in row, res.stdout
        links = p.links("sites/test")
        repo.commit("planted", {"static/version.txt": "planted\n"})
        res = p.doit("deploy:test")
        assert res.returncode != 0 and "/srv/blog/sites" in res.stderr and web2.url in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert tree(outside) == seen, "a link was written outside deploy_root"
        assert p.links("sites/test") == links
    finally:
        web2.run(["sh", "-c", "rm -f /srv/blog/sites && mv /srv/outside /srv/blog/sites"], check=True)
    assert sites.is_dir() and not sites.is_symlink()
    p.ok("deploy:test")


def test_no_temporary_link_is_left_behind(world):
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    web2 = hosts[1]
    # a run killed between its ln and its mv left one; a switch refused on web2 (a directory where the link
    # should be) must leave none either
    web2.run(["ln", "-s", "../releases/x", "/srv/blog/sites/test.tmp.0badc0de"], check=True)
    web2.run(["sh", "-c", "mv /srv/blog/sites/test /srv/blog/test.link && mkdir /srv/blog/sites/test"], check=True)
    try:
        repo.commit("tmp", {"static/version.txt": "tmp\n"})
        res = p.doit("deploy:test")
        assert res.returncode != 0 and "/srv/blog/sites/test" in res.stderr and web2.url in res.stderr, res.stderr
        for h in hosts:
            assert not [x.name for x in h.path("/srv/blog/sites").iterdir() if ".tmp." in x.name and x.name !=
                        "test.tmp.0badc0de"], "the refused switch left a temporary link"
    finally:
        web2.run(["sh", "-c", "rmdir /srv/blog/sites/test && mv /srv/blog/test.link /srv/blog/sites/test"],
                 check=True)
    p.ok("deploy:test")
    for h in hosts:
        assert not [x.name for x in h.path("/srv/blog/sites").iterdir() if ".tmp." in x.name]
