"""One SSH connection per host for a whole run: a whole deploy:test (backup, upload, build, restore, migrate,
switch, verify with testinfra) and a whole promote:prod, counted by sshd itself ("Accepted publickey" in
each host's sshd.log), starting with no master connection to any host."""
from __future__ import annotations

import subprocess

import pytest

from doit_stages.transport import ssh_options


@pytest.fixture(scope="module")
def world(blog_world):
    return blog_world


def close_tool_masters(project, hosts) -> None:
    """Close the run's master connections (the tool's ControlPath), so the next run must log in afresh."""
    for h in hosts:
        subprocess.run(["ssh", *ssh_options(project.values["ssh_config"]), "-O", "exit", "-l", "deploy",
                        "-p", str(h.port), "--", "127.0.0.1"], capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=30)


def logins(hosts) -> list[int]:
    return [h.log.read_text(errors="replace").count("Accepted publickey") for h in hosts]


def rid(link):
    return link.rsplit("/", 1)[-1] if link else None


@pytest.mark.parametrize("command", ["deploy:test", "promote:staging", "promote:prod"])
def test_a_whole_run_logs_in_once_per_host(world, command):
    p, hosts = world["project"], world["hosts"]
    before_links = p.links("sites/test")
    close_tool_masters(p, hosts)
    before = logins(hosts)
    p.ok(command)
    assert [a - b for a, b in zip(logins(hosts), before)] == [1, 1]
    # and the run did its work (not a no-op): the stage's link names the release test runs
    link = {"deploy:test": "sites/test", "promote:staging": "sites/staging", "promote:prod": "sites/current"}
    assert [rid(x) for x in p.links(link[command])] == [rid(p.links("sites/test")[0])] * 2
    if command == "deploy:test":
        assert before_links == [None, None]
