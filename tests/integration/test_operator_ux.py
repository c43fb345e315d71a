"""What a real project meets on its first deploys (issue 17): a reload_command whose shell text holds ` ;`,
a health URL that redirects (a 301 to https behind a TLS proxy) and the headers that satisfy it, a failing
check of the project's own that must say why, and `doit status` / `doit list` without the database password.
Two real sshd hosts, a real MariaDB and a real nginx; the tests run in order on one project."""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.lab.project import DOIT, PASSWORD_ENV, tree

# the reload of an app server that restarts itself: one shell line with ` ; ` inside its quotes, then a comment
RELOAD = ("reload_command = sh -c 'echo \"$STAGE ${PWD##*/}\" >> /srv/blog/shared/reloads ; "
          "echo done >> /srv/blog/shared/reloads'   ; a restart, in the release, with its env\n")
# the app behind a TLS proxy: plain http gets a 301 to https; only the proxy's headers get the page
HEALTH = """
    location /health/ {
        set $seen "$http_x_forwarded_proto $host";
        if ($seen = "https blog.example.com") { return 200 "ok\\n"; }
        if ($http_x_forwarded_proto != "https") { return 301 https://$host$request_uri; }
        return 421;
    }
"""
PROJECT_CHECK = '''\
def test_release_has_a_motd(host, layout, release):
    motd = host.file(layout.release(release) + "/MOTD")
    assert motd.exists, f"{motd.path} is missing: the app must ship a MOTD"


def test_greeting(host):
    assert host.check_output("echo hello") == "goodbye"
'''


@pytest.fixture(scope="module")
def world(blog_world):
    return blog_world


def rid(link):
    return link.rsplit("/", 1)[-1] if link else None


def reloads(host) -> list[str]:
    p = host.path("/srv/blog/shared/reloads")
    return p.read_text().splitlines() if p.exists() else []


def new_release_on_staging(world, version: str) -> str:
    world["repo"].commit(version, {"static/version.txt": f"{version} (operator ux)\n"})
    world["project"].ok("deploy:test")
    world["project"].ok("promote:staging")
    return rid(world["project"].links("sites/staging")[0])


def health_requests(web) -> list[str]:
    log = web.dir / "access.log"
    return [ln for ln in log.read_text().splitlines() if "/health/" in ln] if log.exists() else []


def test_a_semicolon_inside_the_reload_commands_quotes_is_part_of_it(world):
    p, hosts = world["project"], world["hosts"]
    release = new_release_on_staging(world, "r1")
    p.write(prod_stage_extra=RELOAD)
    p.ok("promote:prod")
    assert [rid(x) for x in p.links("sites/current")] == [release, release]
    for h in hosts:   # both halves of the shell line ran, in the release, with the stage's env
        assert reloads(h) == [f"prod {release}", "done"]


def test_a_redirecting_health_check_fails_at_once_naming_the_location(world, nginx_on):
    p, hosts = world["project"], world["hosts"]
    old = p.links("sites/current")
    new = new_release_on_staging(world, "r2")
    web = nginx_on(hosts[0], extra_server_conf=HEALTH)   # one port: every host's {host} is 127.0.0.1
    p.write(prod_stage_extra=RELOAD + f"health_url = http://{{host}}:{web.port}/health/\nhealth_timeout = 10m\n")
    res = p.doit("promote:prod")
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert "HTTP 301 redirect to https://127.0.0.1/health/, not followed (accepted: 2xx)" in res.stderr
    assert "health_headers" in res.stderr and "back on its previous release" in res.stderr, res.stderr
    # at once: one request per host, no retry until health_timeout (10 minutes), no TLS to the app's port
    assert len(health_requests(web)) == 2, health_requests(web)
    assert p.links("sites/current") == old
    for h in hosts:
        last = p.log(h)[-1]
        assert (last["stage"], last["release"], last["result"]) == ("prod", new, "failed")
        assert reloads(h)[-2:] == [f"prod {rid(old[0])}", "done"]   # put back: the old release reloaded


def test_health_headers_are_sent(world, nginx_on):
    p, hosts = world["project"], world["hosts"]
    new = rid(p.links("sites/staging")[0])
    web = nginx_on(hosts[0], extra_server_conf=HEALTH)
    p.write(prod_stage_extra=f"health_url = http://{{host}}:{web.port}/health/\nhealth_timeout = 20s\n"
                             "health_headers = X-Forwarded-Proto: https, Host: blog.example.com\n")
    p.ok("promote:prod")
    assert [rid(x) for x in p.links("sites/current")] == [new, new]
    assert [ln.split('"')[2].split()[0] for ln in health_requests(web)] == ["200", "200"]


def test_a_failing_project_check_prints_its_assertion(world, tmp_path_factory):
    p, hosts = world["project"], world["hosts"]
    checks = tmp_path_factory.mktemp("checks")
    (checks / "test_project_checks.py").write_text(PROJECT_CHECK)
    p.write(project_extra=f"infra_tests = {checks}\n", prod_stage_extra="")
    try:
        res = p.doit("verify:prod")
    finally:
        p.write(project_extra="")
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    out = res.stdout + res.stderr
    release = rid(p.links("sites/current")[0])
    for h in hosts:
        assert f"test_project_checks.py::test_release_has_a_motd[{h.url}]" in res.stderr, res.stderr
        assert f"test_project_checks.py::test_greeting[{h.url}]" in out, out
        assert '"ok": false' in h.path("/srv/blog/.deploy/verified-prod").read_text()
    # the assertion's own text (its message, pytest's comparison), not only the check's id
    assert f"/srv/blog/releases/{release}/MOTD is missing: the app must ship a MOTD" in res.stderr, res.stderr
    assert "assert 'hello' == 'goodbye'" in res.stdout and "test_project_checks.py:7" in res.stdout, res.stdout
    p.ok("verify:prod")
    for h in hosts:
        assert '"ok": true' in h.path("/srv/blog/.deploy/verified-prod").read_text()


def doit_without_password(p, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    return subprocess.run([*DOIT, *args], cwd=p.workdir, env={**env, "STAGES_INI": str(p.ini)},
                          capture_output=True, text=True, timeout=300)


def test_status_and_list_run_without_the_database_password(world):
    p, hosts = world["project"], world["hosts"]
    live = rid(p.links("sites/current")[0])
    before = [tree(h.root) for h in hosts]
    res = doit_without_password(p, "status")
    assert res.returncode == 0, res.stderr
    prod = next(ln for ln in res.stdout.splitlines() if ln.startswith("prod"))
    assert live in prod and "2/2 agree" in prod, res.stdout
    res = doit_without_password(p, "list")
    assert res.returncode == 0 and "deploy:test" in res.stdout, res.stderr
    # a command that logs in to the database stops before it touches a host, naming the variable
    res = doit_without_password(p, "deploy:test")
    assert res.returncode != 0 and res.stderr.splitlines() == [
        res.stderr.strip()] and f"environment variable {PASSWORD_ENV} is not set" in res.stderr, res.stderr
    assert [tree(h.root) for h in hosts] == before
