"""The environment travels with the release (issue #10, item 4): a promotion that fails its reload and puts
every host back leaves the live release's environment byte for byte as it was, and a rollback returns to
the release's own environment. Two real sshd hosts, a real MariaDB, the real blog app: its reload is the
app's own /health/ view (which queries the database) run with the environment the tool hands it."""
from __future__ import annotations

import hashlib
from urllib.parse import quote

import pytest

from tests.lab.common import NASTY_PASSWORD
from tests.lab.project import PASSWORD_ENV
from tests.lab.stages_ini import stages_ini

# What an app server's reload would do: load the app with the environment it is given, answer /health/
# (a database query), print what it saw (the password only as a digest), fail when unhealthy.
PROBE = '''import hashlib, os, sys

import django

django.setup()
from django.conf import settings
from django.test import Client

status = Client().get("/health/").status_code
pw = hashlib.sha256(settings.DATABASES["default"]["PASSWORD"].encode()).hexdigest()[:12]
print(os.path.realpath("."), status, os.environ["DJANGO_SETTINGS_MODULE"], pw)
sys.exit(0 if status == 200 else 1)
'''
RELOAD = "reload_command = sh -c 'python health_probe.py >> /srv/blog/shared/reloads'\n"
ROTATED = NASTY_PASSWORD + " rotated"


def digest(pw: str) -> str:
    return hashlib.sha256(pw.encode()).hexdigest()[:12]


def rid(link):
    return link.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def world(blog_world):
    p = blog_world["project"]
    blog_world["repo"].commit("probe", {"health_probe.py": PROBE})
    p.write(prod_stage_extra=RELOAD)
    p.ok("deploy:test")
    p.ok("promote:staging")
    p.ok("promote:prod")
    return blog_world


def env_bytes(host, rel: str, stage: str) -> bytes:
    return host.path(f"/srv/blog/releases/{rel}/.deploy-env/{stage}.env").read_bytes()


def reloads(host) -> list[str]:
    return host.path("/srv/blog/shared/reloads").read_text().splitlines()


def served(host) -> str:
    """The app as an app server runs it: EnvironmentFile=shared/prod.env, the code of sites/current."""
    res = host.run(["sh", "-c", 'set -a; . /srv/blog/shared/prod.env || exit 9; set +a; '
                                'cd /srv/blog/sites/current && exec .venv/bin/python health_probe.py'])
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip()


def test_one_release_live_on_three_stages_has_three_envs(world):
    p, hosts = world["project"], world["hosts"]
    a = rid(p.links("sites/current")[0])
    assert {rid(x) for s in ("sites/test", "sites/staging", "sites/current") for x in p.links(s)} == {a}
    for h in hosts:
        envs = {s: env_bytes(h, a, s) for s in ("test", "staging", "prod")}
        assert quote(world["test"]) in envs["test"].decode() and quote(world["prod"]) in envs["prod"].decode()
        assert b"STAGE=staging\n" in envs["staging"] and b"STAGE=prod\n" in envs["prod"]
        for s, data in envs.items():
            shared = h.path(f"/srv/blog/shared/{s}.env")
            assert shared.is_symlink() and shared.read_bytes() == data
            assert h.path(f"/srv/blog/releases/{a}/.deploy-env/{s}.env").stat().st_mode & 0o777 == 0o600
        assert h.path(f"/srv/blog/releases/{a}/.deploy-env").stat().st_mode & 0o777 == 0o700
        assert reloads(h) == [f"/srv/blog/releases/{a} 200 blog.settings.prod {digest(NASTY_PASSWORD)}"]


def test_failed_promotion_puts_back_the_release_and_its_environment(world):
    """The issue's case: prod's password env changes, the promotion's reload fails (the new release cannot
    reach its database with it), every host goes back, and the old release runs with its old environment."""
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    a = rid(p.links("sites/current")[0])
    before = {h.name: (env_bytes(h, a, "prod"), h.path(f"/srv/blog/releases/{a}/.deploy-env/prod.env").stat())
              for h in hosts}
    repo.commit("r2", {"static/version.txt": "r2\n"})
    p.ok("deploy:test")
    p.ok("promote:staging")
    b = rid(p.links("sites/staging")[0])
    res = p.doit("promote:prod", env={PASSWORD_ENV: ROTATED})
    assert res.returncode != 0 and "back on its previous release" in res.stderr, res.stderr
    assert ROTATED not in res.stdout + res.stderr and quote(ROTATED, safe="") not in res.stdout + res.stderr
    assert [rid(x) for x in p.links("sites/current")] == [a, a]
    for h in hosts:
        data, st = before[h.name]
        own = h.path(f"/srv/blog/releases/{a}/.deploy-env/prod.env")
        assert own.read_bytes() == data and own.stat().st_mtime_ns == st.st_mtime_ns
        assert h.path("/srv/blog/shared/prod.env").read_bytes() == data
        assert quote(ROTATED, safe="") in env_bytes(h, b, "prod").decode()   # B was given the new one
        # B's reload failed with the rotated password; A's, after the put-back, reached the database
        assert reloads(h)[-2:] == [f"/srv/blog/releases/{b} 500 blog.settings.prod {digest(ROTATED)}",
                                   f"/srv/blog/releases/{a} 200 blog.settings.prod {digest(NASTY_PASSWORD)}"]
        assert served(h) == f"/srv/blog/releases/{a} 200 blog.settings.prod {digest(NASTY_PASSWORD)}"
        assert p.log(h)[-1]["release"] == b and p.log(h)[-1]["result"] == "failed"
    p.ok("verify:prod", env={PASSWORD_ENV: ROTATED})   # checks the live release with its own env


def test_rollback_returns_to_the_previous_releases_environment(world):
    p, hosts = world["project"], world["hosts"]
    a, b = rid(p.links("sites/current")[0]), rid(p.links("sites/staging")[0])
    before = {h.name: env_bytes(h, a, "prod") for h in hosts}
    # another setting of prod's environment changes, and B goes live with it
    p.template = stages_ini({"stage:prod": {"settings": "blog.settings.test"}})
    p.write()
    p.ok("promote:prod")
    assert [rid(x) for x in p.links("sites/current")] == [b, b]
    for h in hosts:
        assert b"blog.settings.test" in h.path("/srv/blog/shared/prod.env").read_bytes()
        assert reloads(h)[-1] == f"/srv/blog/releases/{b} 200 blog.settings.test {digest(NASTY_PASSWORD)}"
    after_b = {h.name: env_bytes(h, b, "prod") for h in hosts}
    res = p.ok("rollback:prod")
    assert f"{b} marked bad" in res.stdout
    assert [rid(x) for x in p.links("sites/current")] == [a, a]
    for h in hosts:
        assert env_bytes(h, a, "prod") == before[h.name] == h.path("/srv/blog/shared/prod.env").read_bytes()
        assert env_bytes(h, b, "prod") == after_b[h.name]
        assert reloads(h)[-1] == f"/srv/blog/releases/{a} 200 blog.settings.prod {digest(NASTY_PASSWORD)}"
        assert served(h) == f"/srv/blog/releases/{a} 200 blog.settings.prod {digest(NASTY_PASSWORD)}"
