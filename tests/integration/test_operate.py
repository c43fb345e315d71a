"""The operator commands on a deployed stage (issue 21): run:<stage> CMD in the live release with its env on the
primary or on DEPLOY_HOSTS, each line prefixed by its host and the worst exit status; a piped console:<stage>;
logs:<stage> followed on every host until SIGINT, after which no tail is left on any host. Two real sshd hosts
and a real MariaDB; the stage ships code only (build = none) with a database, so its env holds a password."""
from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import queue
import re
import secrets
import select
import signal
import subprocess
import termios
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.lab.apprepo import AppRepo
from tests.lab.common import NASTY_PASSWORD
from tests.lab.project import DOIT, PASSWORD_ENV
from tests.lab.sshd import mount_ns, pids_in_mount_ns
from tests.lab.stages_ini import CODE_ONLY, THIS_MACHINE, stages_ini
from tests.lab.world import open_world

# one stage, test, on web1 and web2: code only (nothing built), on the test database (its env: DATABASE_URL
# with the password); its migrate_command is no Django, so deploy:test needs no app
OPERATE = {
    "project": {"build": "none", "build_command": None, "shared_dirs": None, "stage_dirs": None,
                "migrate_command": "true", "console_command": "python3"},
    "database:prod": None,
    "stage:test": {"restore_from": None},
    "stage:staging": None,
    "stage:prod": None,
}
# CMD: the stage, a digest of DATABASE_URL, then the command line of every process from this one up to init
# on the host (the wrapper and the channel the deployer sent it through among them)
ANCESTORS = ('echo "stage=$STAGE"; printf %s "$DATABASE_URL" | sha256sum; p=$$; while [ "$p" -gt 1 ]; do '
             'printf "argv: "; tr "\\000" " " < /proc/$p/cmdline; echo; read -r s < /proc/$p/stat; s=${s##*) }; '
             'set -- $s; p=$2; done')


@pytest.fixture(scope="module")
def world(ssh_hosts, mariadb, tmp_path_factory):
    with open_world(mariadb, ssh_hosts, tmp_path_factory.mktemp("operate"), changes=[OPERATE]) as world:
        world["project"].ok("deploy:test")
        yield world


def label(host) -> str:
    return f"127.0.0.1:{host.port}"   # every lab host is 127.0.0.1: told apart by port


def doit(p, *args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    environ = {**{k: v for k, v in os.environ.items() if k != "DEPLOY_HOSTS"}, "STAGES_INI": str(p.ini),
               PASSWORD_ENV: p.password, **(env or {})}
    return subprocess.run([*DOIT, *args], cwd=p.workdir, env=environ, capture_output=True, text=True,
                          input=input, timeout=300)


def test_run_prints_the_primarys_lines_from_the_live_release_with_its_env_and_no_secret_on_argv(world):
    p, web1 = world["project"], world["hosts"][0]
    release = p.link(web1).rsplit("/", 1)[1]
    res = doit(p, "run:test", "sh", "-c", ANCESTORS)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert all(ln.startswith(f"[{label(web1)}] ") for ln in lines), res.stdout   # the primary only
    assert lines[0] == f"[{label(web1)}] stage=test"
    url = f"mysql://{p.values['user']}:{quote(NASTY_PASSWORD, safe='')}@127.0.0.1:3306/{world['test']}"
    assert lines[1].split()[1] == hashlib.sha256(url.encode()).hexdigest()   # the env file's value, exactly
    argvs = [ln for ln in lines if "] argv: " in ln]
    sent = next(ln for ln in argvs if "dst-watch" in ln)   # the channel's process: the argv as the host got it
    assert f"/srv/blog/releases/{release}/.deploy-env/test.env" in sent, sent
    for secret in (NASTY_PASSWORD, quote(NASTY_PASSWORD, safe="")):
        assert secret not in res.stdout and secret not in res.stderr


def test_run_on_every_host_prefixes_each_line_and_exits_with_the_worst_status(world):
    p, web1, web2 = world["project"], *world["hosts"]
    web2.path("/srv/blog/shared/exit-code").parent.mkdir(parents=True, exist_ok=True)
    web2.path("/srv/blog/shared/exit-code").write_text("3\n")
    cmd = ["sh", "-c", 'echo "out of $STAGE"; echo "err of $STAGE" >&2; exit $(cat ../../shared/exit-code 2>/dev/null '
           '|| echo 0)']
    try:
        res = doit(p, "run:test", *cmd, env={"DEPLOY_HOSTS": "all"})
        assert res.returncode == 3, res.stderr
        assert sorted(res.stdout.splitlines()) == sorted([f"[{label(h)}] out of test" for h in (web1, web2)])
        # exactly the commands' own lines and the tool's one line: nothing of the hosts' shells ("Terminated")
        want = [f"[{label(web1)}] err of test", f"[{label(web2)}] err of test", f"run:test: {label(web2)} exited 3"]
        assert sorted(res.stderr.splitlines()) == sorted(want), res.stderr
        only = doit(p, "run:test", *cmd, env={"DEPLOY_HOSTS": web2.url})   # a host as stages.ini writes it
        assert only.returncode == 3 and only.stdout == f"[{label(web2)}] out of test\n", only.stderr
    finally:
        web2.path("/srv/blog/shared/exit-code").unlink()
    res = doit(p, "run:test", "true", env={"DEPLOY_HOSTS": "web9"})
    assert res.returncode == 1 and res.stdout == "", res.stdout
    assert res.stderr.strip().splitlines() == [f"ERROR: run:test: DEPLOY_HOSTS names 'web9', which is no host of "
                                               f"stage test (its hosts: {web1.url}, {web2.url}); write all, or some "
                                               "of those, comma-separated"]


def test_a_piped_console_runs_in_the_live_release_and_prints_the_result(world):
    p = world["project"]
    res = doit(p, "console:test", input="import os\nprint(1 + 1, os.environ['STAGE'], os.getcwd())\n")
    release = p.link(world["hosts"][0]).rsplit("/", 1)[1]
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"2 test /srv/blog/releases/{release}\n"
    res = doit(p, "console:test", input="raise SystemExit(4)\n")
    assert res.returncode == 4, res.stderr


class Lines:
    """A process's stdout lines as they come (a thread reads them into a queue): expect() waits on one."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.q, self.seen = proc, queue.Queue(), []
        threading.Thread(target=lambda: [self.q.put(ln) for ln in proc.stdout], daemon=True).start()

    def expect(self, line: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.seen:
            try:
                self.seen.append(self.q.get(timeout=max(0.01, deadline - time.monotonic())).rstrip("\n"))
            except queue.Empty:
                raise AssertionError(f"no line {line!r} within {timeout}s; got {self.seen}") from None


def procs(host, needle: str) -> list[str]:
    """The command lines on the host (its mount namespace) that hold needle, zombies left out."""
    found = []
    for pid in pids_in_mount_ns(mount_ns(host.pid)):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and needle in cmd:
            found.append(cmd)
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])   # Ctrl-C, and a cancelled CI job
def test_logs_follows_every_host_until_sigint_and_leaves_no_tail_behind(world, sig):
    p, hosts = world["project"], world["hosts"]
    res = doit(p, "logs:test")
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "ERROR: logs:test: log_command is not set; set it in [stage:test] or [project], e.g. log_command = "
        "tail -F shared/log/app.log (run in deploy_root on each host)"], res.stderr
    token = secrets.token_hex(4)
    logs = [h.path(f"/srv/blog/shared/log/{token}.log") for h in hosts]
    for h, log in zip(hosts, logs):
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"started on {h.name}\n")
    p.write(project_extra=f"log_command = tail -n 1 -F shared/log/{token}.log\n")
    environ = {**os.environ, "STAGES_INI": str(p.ini), PASSWORD_ENV: p.password}
    proc = subprocess.Popen([*DOIT, "logs:test"], cwd=p.workdir, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out = Lines(proc)
        for h in hosts:
            out.expect(f"[{label(h)}] started on {h.name}")
        with logs[1].open("a") as f:   # followed: a line written now arrives, from its host
            f.write("a request on web2\n")
        out.expect(f"[{label(hosts[1])}] a request on web2")
        assert all(procs(h, token) for h in hosts)   # the tails run there now
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        p.write(project_extra="")
    err = proc.stderr.read()
    assert err.strip().splitlines() == ["logs:test: interrupted; log_command ended on every host"], err
    for h in hosts:
        assert procs(h, token) == [], f"left running on {h.name}"
    assert not [ln for ln in out.seen if not re.match(r"\[127\.0\.0\.1:\d+\] ", ln)], out.seen


def test_a_console_on_a_terminal_gets_a_terminal_on_the_host_and_keeps_its_ctrl_c(world):
    p = world["project"]
    environ = {**os.environ, "STAGES_INI": str(p.ini), PASSWORD_ENV: p.password, "TERM": "dumb"}
    master, slave = pty.openpty()
    # the pty is doit's controlling terminal, as an operator's is: a Ctrl-C that ssh did not take would
    # interrupt doit itself
    proc = subprocess.Popen([*DOIT, "console:test"], cwd=p.workdir, env=environ, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    seen = b""

    def until(text: bytes, timeout: float = 120) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            ready, _, _ = select.select([master], [], [], max(0.01, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {text!r} within {timeout}s; got {seen!r}")
            try:
                seen += os.read(master, 4096)
            except OSError:   # the terminal's other side is closed: doit ended
                raise AssertionError(f"doit ended before {text!r}; got {seen!r}") from None
    try:
        until(b">>> ")              # python3's prompt: its stdin on the host is a terminal
        os.write(master, b"import time; time.sleep(600)\r")
        time.sleep(0.5)
        os.write(master, b"\x03")   # Ctrl-C reaches the console on the host, not doit
        until(b"KeyboardInterrupt")
        os.write(master, b"print(6 * 7)\r")
        until(b"42")
        os.write(master, b"exit()\r")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_on_a_local_stage_run_console_and_logs_work_here(tmp_path):
    AppRepo(tmp_path / "blog")
    (tmp_path / "work").mkdir()
    ini = tmp_path / "work" / "stages.ini"
    ini.write_text(stages_ini(CODE_ONLY, THIS_MACHINE, {"project": {
        "source": "../blog", "deploy_root": "srv", "console_command": "python3",
        "log_command": "tail -n 1 -F shared/app.log"}}))
    environ = {**{k: v for k, v in os.environ.items() if k != "DEPLOY_HOSTS"}, "STAGES_INI": str(ini)}

    def local(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*DOIT, *args], cwd=ini.parent, env=environ, capture_output=True, text=True,
                              input=input, timeout=300)
    assert local("deploy:test").returncode == 0
    release = os.readlink(ini.parent / "srv" / "sites" / "test").rsplit("/", 1)[1]
    res = local("run:test", "sh", "-c", 'echo "$STAGE in ${PWD##*/}"; exit 5')
    assert (res.returncode, res.stdout) == (5, f"[local] test in {release}\n"), res.stderr
    res = local("console:test", input="import os; print(2 + 2, os.environ['STAGE'])\n")
    assert (res.returncode, res.stdout) == (0, "4 test\n"), res.stderr
    log = ini.parent / "srv" / "shared" / "app.log"
    log.write_text("hello here\n")
    proc = subprocess.Popen([*DOIT, "logs:test"], cwd=ini.parent, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        Lines(proc).expect("[local] hello here")
        srv = f"{ini.parent / 'srv'}/"   # log_command runs in deploy_root
        tails = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cwd(pid) == srv]
        assert tails
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [pid for pid in tails if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]


def _cwd(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd") + "/"
    except OSError:
        return ""


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_a_host_without_a_live_release_stops_run_before_anything_runs_anywhere(world):
    p, web1, web2 = world["project"], *world["hosts"]
    link, aside = web2.path("/srv/blog/sites/test"), web2.path("/srv/blog/sites/test.aside")
    os.rename(link, aside)
    try:
        res = doit(p, "run:test", "touch", "/srv/blog/shared/ran", env={"DEPLOY_HOSTS": "all"})
    finally:
        os.rename(aside, link)
    assert res.returncode == 1 and res.stdout == "", res.stdout
    assert res.stderr.strip().splitlines() == [
        f"ERROR: run:test: {web2.url}: stage test has no live release there (sites/test is missing); run doit "
        "deploy:test; nothing was run (DEPLOY_HOSTS can leave a host out)"], res.stderr
    assert not web1.path("/srv/blog/shared/ran").exists() and not web2.path("/srv/blog/shared/ran").exists()
