"""One SSH connection per host for a whole run: a whole deploy:test (backup, upload, build, restore, migrate,
switch, verify with testinfra) and a whole promote:prod, counted by sshd itself ("Accepted publickey" in
each host's sshd.log), starting with no master connection to any host."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from doit_stages.config import parse_host
from doit_stages.executor import Connections, Executor
from doit_stages.transport import CommandFailed, SSHTransport, ssh_options
from tests.lab.project import PASSWORD_ENV


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



def test_a_login_that_failed_before_anyone_waited_for_it_is_still_a_failure(world):
    """wait_login (a bounded login through a bastion, a second channel, a tunnel) after ssh already ended
    without an answer: the login's failure, with ssh's words; not a login taken for done."""
    p = world["project"]
    with socket.socket() as s:                    # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = parse_host(f"ssh://deploy@127.0.0.1:{s.getsockname()[1]}")
    t = SSHTransport(dead, p.values["ssh_config"])
    try:
        t.shell.proc.wait(timeout=30)             # ssh gave up before anyone waited for its login
        with pytest.raises(CommandFailed) as info:
            t.wait_login()
        assert info.value.unreachable and "Connection refused" in info.value.stderr
        assert t.session is None and t.session_word() == ""
    finally:
        t.close()
    conns = Connections(p.values["ssh_config"], logins=2)   # bounded logins wait for each login
    with pytest.raises(CommandFailed):
        conns.get(dead)
    assert conns.open_transports() == []

# dodo.py imported as doit imports it, Connections.early noting which task modules were imported by then
EARLY_PROBE = """
import os, sys
import doit.loader
doit.loader.initial_workdir = os.getcwd()
from doit_stages.executor import Connections
seen = []
Connections.early = lambda self, hosts: seen.append((sorted(str(h) for h in hosts), sorted(
    m for m in ("doit_stages.commands", "doit_stages.doit_tasks", "doit_stages.nodes", "doit_stages.releases")
    if m in sys.modules)))
sys.argv = ["doit", "deploy:test"]
import doit_stages.dodo
assert "doit_stages.commands" in sys.modules and "doit_stages.releases" in sys.modules
print(seen)
"""


def test_the_logins_start_before_the_task_modules_are_imported(world):
    """tasks/dodo.py makes the run (start.this_run: the config, the Session, the logins in the background)
    before it imports the task modules, whose import the logins then overlap."""
    p, hosts = world["project"], world["hosts"]
    env = {**os.environ, "STAGES_INI": str(p.ini), PASSWORD_ENV: p.password}
    res = subprocess.run([sys.executable, "-c", EARLY_PROBE], cwd=p.workdir, env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{[(sorted(h.url for h in hosts), [])]}\n"
