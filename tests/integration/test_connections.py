"""One SSH connection per host for a whole run: a whole deploy:test (backup, upload, build, restore, migrate,
switch, verify with testinfra) and a whole promote:prod, counted by sshd itself ("Accepted publickey" in
each host's sshd.log), starting with no master connection to any host."""
from __future__ import annotations

import socket
import subprocess

import pytest

from doit_stages.config import parse_host
from doit_stages.executor import Connections, Executor
from doit_stages.transport import CommandFailed, ssh_options


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


def test_an_early_connection_is_the_one_the_run_uses_and_an_early_failure_is_told_once(world):
    """Connections.early (start.this_run: the hosts the command names, while doit starts): get() waits for it
    instead of logging in a second time; a host that cannot be reached fails its first command as "cannot
    reach the host" with ssh's own words (a session's first command does not wait for the login: it goes
    behind the hello), its connection is dropped, and the next get() tries again."""
    p, hosts = world["project"], world["hosts"]
    close_tool_masters(p, hosts)
    before = logins(hosts)
    with socket.socket() as s:                    # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = parse_host(f"ssh://deploy@127.0.0.1:{s.getsockname()[1]}")
    targets = [parse_host(h.url) for h in hosts]
    conns = Connections(p.values["ssh_config"])
    try:
        conns.early([*targets, dead, targets[0]])
        got = [conns.get(h) for h in targets]
        assert [t.run(["cat", "/etc/hostname"]).strip() != "" for t in got] == [True, True]
        assert [conns.get(h) for h in targets] == got
        assert [a - b for a, b in zip(logins(hosts), before)] == [1, 1]
        run, tried = Executor(conns, 2), []
        for _ in range(2):                        # the early failure, then a connection tried anew
            with pytest.raises(CommandFailed) as info:
                run.one(dead, lambda t: tried.append(t) or t.run(["true"]))
            assert info.value.unreachable and str(dead.port) in str(info.value) + info.value.stderr
            assert "Connection refused" in info.value.stderr
        assert tried[0] is not tried[1]
    finally:
        conns.close_all()
