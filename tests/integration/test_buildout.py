"""build = buildout: examples/blog-buildout through test -> staging -> prod on two real sshd hosts and a real
MariaDB, with no network on the hosts. Every SSH session on these hosts has http_proxy, https_proxy,
HTTP_PROXY and HTTPS_PROXY pointing at a local port that accepts, counts and drops every connection: a
proxy that lets nothing through (like a closed port) and also tells whether anything tried. The tests run
in order on one project. Also: the bin/ dispatchers the build writes, run with sh in a temp dir."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from doit_stages.steps.buildout import DISPATCHER, WRITE_DISPATCHERS
from tests.lab.common import HarnessError
from tests.lab.sshd import SshHosts
from tests.lab.world import open_world

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "blog-buildout"
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
STAGE_SETTINGS = {"test": "blog.settings.test", "staging": "blog.settings.prod", "prod": "blog.settings.prod"}


BUILDOUT = {"project": {"build": "buildout", "build_command": "bin/django collectstatic --noinput",
                        "migrate_command": "bin/django migrate --noinput"},
            "stage:staging": {"buildout_config": "buildout-prod.cfg"},
            "stage:prod": {"buildout_config": "buildout-prod.cfg"}}


class DeadProxy:
    """127.0.0.1:<port>: accepts every connection, notes its first request line (CONNECT pypi.org:443 ...)
    and closes it: nothing gets through."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def count(self) -> int:
        return len(self.requests)

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(300).split(b"\r\n")[0].decode(errors="replace")
                except OSError:
                    first = "?"
            self.requests.append(first)

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def world(mariadb, tmp_path_factory):
    proxy = DeadProxy()
    try:
        hosts = SshHosts(tmp_path_factory.mktemp("offline-hosts"), names=("bo1", "bo2"),
                         env={v: proxy.url for v in PROXY_VARS})
    except HarnessError as e:
        pytest.fail(f"cannot start the SSH test hosts: {e}", pytrace=False)
    with open_world(mariadb, hosts, tmp_path_factory.mktemp("buildout-world"), ("bo1", "bo2"), changes=[BUILDOUT],
                    example=EXAMPLE, tag="b") as world:
        yield {**world, "proxy": proxy}
    hosts.stop()
    proxy.close()


def rid(link):
    return link.rsplit("/", 1)[-1] if link else None


def test_every_session_on_the_hosts_goes_through_the_dead_proxy(world):
    """Without this, 'no connection reached the proxy' would prove nothing."""
    proxy = world["proxy"]
    for host in world["hosts"]:
        res = host.ssh("python3 -c 'import urllib.request; print(sorted(set(urllib.request.getproxies().values())))'")
        assert res.stdout.strip() == repr([proxy.url]), res.stderr
    before = proxy.count
    fetch = "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/', timeout=10)"
    res = world["hosts"][0].ssh(f'python3 -c "{fetch}"')
    assert res.returncode != 0 and proxy.count > before


def test_buildout_release_goes_test_staging_prod_with_no_network(world):
    p, db, proxy = world["project"], world["mariadb"], world["proxy"]
    before = proxy.count
    for command in ("deploy:test", "promote:staging", "promote:prod"):
        p.ok(command)
    assert proxy.count == before, f"the hosts tried to reach the network: {proxy.requests[before:]}"
    release = rid(p.links("sites/test")[0])
    for link in ("sites/test", "sites/staging", "sites/current"):
        assert [rid(x) for x in p.links(link)] == [release, release]
    for host in world["hosts"]:
        rel = host.path(f"/srv/blog/releases/{release}")
        assert (rel / ".venv" / "bin" / "buildout").is_file()
        assert (rel / "bin" / "django").read_text() == DISPATCHER
        for stage, settings in STAGE_SETTINGS.items():
            script = (rel / ".buildout" / stage / "bin" / "django").read_text()
            assert f"manage('{settings}')" in script          # the stage's own buildout config
            assert f"/srv/blog/releases/{release}/.buildout/eggs/v5/Django-5.2.19" in script
            # build_command (bin/django collectstatic) ran for every stage, into its STAGE_DIR
            assert host.path(f"/srv/blog/shared/{stage}/{release}/static/posts/site.css").is_file()
        # the dispatcher runs prod's script with prod's environment, in the live release
        res = host.run(["sh", "-c", 'set -a; . /srv/blog/shared/prod.env; cd /srv/blog/sites/current && '
                                    'exec bin/django migrate --check'])
        assert res.returncode == 0, res.stderr
    for name in (world["test"], world["prod"]):
        assert {"posts_post", "posts_comment", "django_migrations"} <= set(db.tables(name))
        assert db.query(name, "SELECT COUNT(*) FROM django_migrations WHERE app = 'posts'")[0][0] == 3
    again = p.ok("promote:prod")
    assert [ln for ln in again.stdout.splitlines() if ln.startswith(".  ")] == [".  verify:prod"]


def test_unpinned_eggs_fail_the_archive_all_in_one_line(world):
    """Found on the deploying machine at `archive`, every one of them at once, before any host builds."""
    p, repo, proxy = world["project"], world["repo"], world["proxy"]
    links = {link: p.links(link) for link in ("sites/test", "sites/staging", "sites/current")}
    releases = [sorted(h.path("/srv/blog/releases").iterdir()) for h in world["hosts"]]
    before = proxy.count
    cfg = (repo.path / "buildout.cfg").read_text()
    # six, attrs: real distributions, on PyPI, but not pinned, so not in the wheelhouse
    repo.commit("r2", {"buildout.cfg": cfg.replace("    mysql-connector-python\n",
                                                   "    mysql-connector-python\n    six\n    attrs[tests]\n")})
    try:
        res = p.doit("deploy:test")
        assert res.returncode != 0
        lines = [ln for ln in (res.stdout + res.stderr).splitlines() if "not pinned" in ln]
        assert lines == ["ERROR: archive: not pinned in [versions]: attrs ([django] eggs in buildout.cfg), six "
                         "([django] eggs in buildout.cfg); add name = version for each (the hosts' buildout picks "
                         "no version: it installs only what [versions] pins, from the wheelhouse)"], \
            res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        assert {link: p.links(link) for link in links} == links
        assert [sorted(h.path("/srv/blog/releases").iterdir()) for h in world["hosts"]] == releases
        assert proxy.count == before
    finally:
        repo._run("git", "reset", "-q", "--hard", "HEAD~1")


MANAGE_PY = (Path(__file__).resolve().parents[2] / "examples" / "blog" / "manage.py").read_text()
# zc.recipe.egg's interpreter script, as teams write it: bin/py runs the eggs' Python with the release on sys.path
INTERPRETER_PART = """
[py]
recipe = zc.recipe.egg
eggs = ${django:eggs}
interpreter = py
extra-paths = ${buildout:directory}
"""
SUBTITLE = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("posts", "0003_populate_post_slug")]
    operations = [migrations.AddField("post", "subtitle", models.CharField(max_length=100, null=True))]
'''
FAILS = '''from django.db import migrations


def boom(apps, schema_editor):
    raise RuntimeError("this migration fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("posts", "0004_post_subtitle")]
    operations = [migrations.RunPython(boom, migrations.RunPython.noop)]
'''


def test_migrate_through_an_interpreter_script_is_rehearsed_and_bounded(world):
    """migrate_command = bin/py manage.py migrate (a zc.recipe.egg `interpreter =` script, which runs -c before
    it sets sys.argv): the rehearsal's and the bounded migration's runners run as files, so the rehearsal
    reports the migration and production is migrated through them; a failing migration shows its own error."""
    p, repo, db = world["project"], world["repo"], world["mariadb"]
    cfg, head = (repo.path / "buildout.cfg").read_text(), repo._run("git", "rev-parse", "HEAD").strip()
    repo.commit("bin/py", {"manage.py": MANAGE_PY, "posts/migrations/0004_post_subtitle.py": SUBTITLE,
                           "buildout.cfg": cfg.replace("parts = django\n", "parts = django py\n") + INTERPRETER_PART})
    template = p.template
    p.template = template.replace("migrate_command = bin/django migrate --noinput",
                                  "migrate_command = bin/py manage.py migrate --noinput")
    p.write()
    try:
        p.ok("deploy:test")
        release = rid(p.links("sites/test")[0])
        host = world["hosts"][0]
        assert host.path(f"/srv/blog/releases/{release}/.buildout/test/bin/py").is_file()
        report = json.loads(host.path(f"/srv/blog/.deploy/rehearsals/{release}.json").read_text())
        assert [m["name"] for m in report["migrations"]] == ["posts.0004_post_subtitle"], report
        assert "ADD COLUMN `subtitle`" in report["migrations"][0]["sql"][0]
        p.ok("promote:staging")
        assert "subtitle" in [c for (c,) in db.query(
            None, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = "
                  "'posts_post'", (world["prod"],))]
        links = {link: p.links(link) for link in ("sites/test", "sites/staging")}
        repo.commit("boom", {"posts/migrations/0005_boom.py": FAILS})
        res = p.doit("deploy:test")
        assert res.returncode != 0 and "Traceback" not in res.stderr
        line = next(ln for ln in res.stderr.splitlines() if "migrate:test" in ln)
        assert line.endswith("RuntimeError: this migration fails on purpose"), line
        assert {link: p.links(link) for link in links} == links
    finally:
        p.template = template
        p.write()
        repo._run("git", "reset", "-q", "--hard", head)


def test_dispatchers_run_the_stage_script_and_refuse_a_clash(tmp_path):
    rel = tmp_path / "rel"
    for stage in ("test", "prod"):
        bin_dir = rel / ".buildout" / stage / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "django").write_text(f"#!/bin/sh\necho {stage} \"$@\"\n")
        (bin_dir / "django").chmod(0o755)
        subprocess.run(["sh", "-c", WRITE_DISPATCHERS, "sh", str(rel), stage, DISPATCHER.rstrip("\n")], check=True)
    env = dict(os.environ, STAGE="prod")
    res = subprocess.run(["bin/django", "a b"], cwd=rel, env=env, capture_output=True, text=True)
    assert res.stdout == "prod a b\n"
    env["STAGE"] = "test"
    assert subprocess.run([str(rel / "bin" / "django")], cwd="/", env=env, capture_output=True,
                          text=True).stdout == "test\n"
    del env["STAGE"]
    res = subprocess.run(["bin/django"], cwd=rel, env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "STAGE: is not set" in res.stderr
    (rel / "bin" / "django").write_text("#!/bin/sh\necho the app's own\n")
    res = subprocess.run(["sh", "-c", WRITE_DISPATCHERS, "sh", str(rel), "test", DISPATCHER.rstrip("\n")],
                         capture_output=True, text=True)
    assert res.returncode == 3 and "is the release's own file" in res.stderr
    assert (rel / "bin" / "django").read_text() == "#!/bin/sh\necho the app's own\n"
