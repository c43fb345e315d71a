"""A run owns its remote work (watchdog.py): on real sshd hosts, the deployer SIGKILLed while a long command
runs there. The command ends with it (and a hung host that comes back runs nothing of it on); a migration
finishes alone and the next run waits for it; where the host never learned that the connection was gone
(its watchdog killed here), the next run or `doit unlock` ends what the dead run's lock records before the
lock is broken. Effects are read on the hosts (/proc in each host's namespace, files) and in MariaDB."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.common import NASTY_PASSWORD
from tests.lab.project import DOIT, PASSWORD_ENV
from tests.lab.sshd import mount_ns, pids_in_mount_ns

MARKS = "/srv/blog/shared/marks"
COLLECT = "python manage.py collectstatic --noinput"
# the slow build: it waits while HOLD exists (the test holds it there as long as it needs: no timing window),
# then writes its mark
HOLD = "/srv/blog/shared/hold-build"
SLOW = f"build_command = sh -c '{COLLECT} && while [ -e {HOLD} ]; do sleep 0.1; done && echo first >> {MARKS}'"
QUICK = f"build_command = sh -c '{COLLECT} && echo second >> {MARKS}'"

SLOW_IN_PROD = '''import os
import time

from django.db import migrations, models


def slow_in_prod(apps, schema_editor):
    if os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".prod"):
        time.sleep(15)


class Migration(migrations.Migration):
    dependencies = [("posts", "0003_populate_post_slug")]
    operations = [migrations.RunPython(slow_in_prod, migrations.RunPython.noop),
                  migrations.AddField("post", "views", models.IntegerField(null=True))]
'''


@pytest.fixture(scope="module")
def world(blog_world):
    p = blog_world["project"]
    for cmd in ("deploy:test", "promote:staging", "promote:prod"):
        p.ok(cmd)
    return blog_world


def procs(host, *needles: str) -> list[int]:
    """Live processes of the host (its mount namespace) whose command line holds every needle."""
    found = []
    for pid in pids_in_mount_ns(mount_ns(host.pid)):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and all(n in cmd for n in needles):
            found.append(pid)
    return found


def migrating(host) -> list[int]:
    """The production migration on the host: manage.py migrate marked to finish alone (SIGHUP ignored)."""
    def finishes_alone(pid: int) -> bool:
        try:
            sigign = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("SigIgn:"))
        except (OSError, StopIteration):
            return False
        return int(sigign.split()[1], 16) & 1 == 1
    return [pid for pid in procs(host, "manage.py migrate --noinput") if finishes_alone(pid)]


def wait_for(cond, timeout: float = 120.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return cond()


def start(p, *args: str) -> subprocess.Popen:
    env = dict(os.environ, STAGES_INI=str(p.ini), **{PASSWORD_ENV: NASTY_PASSWORD})
    return subprocess.Popen([*DOIT, *args], cwd=p.workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate(timeout=60)


@contextlib.contextmanager
def build_command(p, line: str):
    p.ini.write_text(p.ini.read_text().replace(f"build_command = {COLLECT}", line))
    try:
        yield
    finally:
        p.write()


def marks(host) -> str:
    f = host.path(MARKS)
    return f.read_text() if f.exists() else ""


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def switch_off_watchdogs(host) -> None:
    """Kill the relay (and its cat) of every session the host's lock records: from now on the host never
    learns that the run's connection is gone, as when the network between them is cut."""
    lines = host.path("/srv/blog/.deploy/lock/sessions").read_text().splitlines()
    assert lines, "the lock records no session"
    for line in lines:
        for child in children(int(line.split()[0])):
            cats = [c for c in children(child) if Path(f"/proc/{c}/comm").read_text().strip() == "cat"]
            if cats:
                os.kill(child, signal.SIGKILL)
                for c in cats:
                    os.kill(c, signal.SIGKILL)


def release_holds(hosts) -> None:
    """Let every held build go on: one that still runs writes its mark at once."""
    for h in hosts:
        h.path(HOLD).unlink(missing_ok=True)


def kill_during_slow_build(world, tag: str, watchdogs: bool = True) -> None:
    """deploy:test of a new commit, SIGKILLed while every host runs the slow build_command (held there)."""
    p, hosts = world["project"], world["hosts"]
    world["repo"].commit(tag, {"static/version.txt": tag + "\n"})
    for h in hosts:
        h.path(MARKS).unlink(missing_ok=True)
        h.write_file(HOLD, "")
    with build_command(p, SLOW):
        proc = start(p, "deploy:test")
        try:
            assert wait_for(lambda: all(procs(h, HOLD) for h in hosts) or proc.poll() is not None)
            assert proc.poll() is None, proc.communicate()
            if not watchdogs:
                for h in hosts:
                    switch_off_watchdogs(h)
        finally:
            kill(proc)


def test_the_lock_records_the_session_and_each_second_channel(ssh_hosts):
    from doit_stages.config import parse_host
    from doit_stages.layout import Layout
    from doit_stages.runtime.lock import record_session, release_lock, take_lock
    from doit_stages.transport import SSHTransport

    web1, layout, token = ssh_hosts["web1"], Layout("/srv/locks"), "a" * 32
    t = SSHTransport(parse_host(web1.url), ssh_hosts.ssh_config)
    try:
        # the take is the session's first command: sent behind the hello, it records the session by the
        # shell's own ident ("-"), which must be the one the hello's answer names
        assert t.session_word() == "-"
        assert take_lock(t, layout, {"user": "u", "machine": "m", "pid": 1, "token": token}) is None
        t.on_session = lambda watched: record_session(t, layout, token, watched.line())
        running = t.stream(["sh", "-c", "read x; echo got $x"])
        record_session(t, layout, "b" * 32, t.session.line())   # not its lock: nothing recorded
        record_session(t, layout, "b" * 32, "-")
        record_session(t, layout, token, "-")                    # a new connection's own, as Session._own does
        lines = web1.path(layout.lock_sessions).read_text().splitlines()
        assert lines[0] == t.session.line() == lines[2] and len(lines) == 3
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        for line in lines:                  # each one a live process of the host, by pid and start time
            pid, start, line_boot = line.split()
            assert int(pid) in pids_in_mount_ns(mount_ns(web1.pid)) and line_boot == boot
            assert Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19] == start
        running.write("hi\n")
        assert "".join(c for _, c in running.chunks()) == "got hi\n"
        running.finish()
        release_lock(t, layout, token)
        assert not web1.path(layout.lock).exists()
    finally:
        t.close()
        web1.run(["rm", "-rf", "/srv/locks"])



# as root in a host's mount namespace: its /dev replaced by one without stdin (null, zero, random, urandom and fd
# kept), as in a jail or a minimal container; $1 an empty directory of the deploying machine's
HIDE_STDIN = ('d=$1; mount -t tmpfs none "$d" && for n in null zero random urandom; do cp -a "/dev/$n" "$d/" || exit; '
              'done && ln -s /proc/self/fd "$d/fd" && mount --bind "$d" /dev')


def test_a_host_whose_sessions_cannot_read_dev_stdin_still_has_its_session_recorded(ssh_hosts, tmp_path):
    """There the watchdog runs the session by `exec sh` (watch.sh) instead of sourcing /dev/stdin: the
    lock's take, sent behind the hello, still records the session by the ident the hello names."""
    from doit_stages.config import parse_host
    from doit_stages.layout import Layout
    from doit_stages.runtime.lock import release_lock, take_lock
    from doit_stages.transport import SSHTransport

    web2, layout, token = ssh_hosts["web2"], Layout("/srv/locks"), "c" * 32
    dev = tmp_path / "dev"
    dev.mkdir()
    web2.run(["sh", "-c", HIDE_STDIN, "sh", str(dev)], user=None, check=True)
    try:
        assert web2.ssh("test -e /dev/stdin || echo none").stdout == "none\n"
        t = SSHTransport(parse_host(web2.url), ssh_hosts.ssh_config)
        try:
            assert take_lock(t, layout, {"user": "u", "machine": "m", "pid": 1, "token": token}) is None
            assert t.call(["sh", "-c", "test -e /dev/stdin || echo none"]) == (0, "none\n", "")
            lines = web2.path(layout.lock_sessions).read_text().splitlines()
            assert lines == [t.session.line()]
            pid, start, _ = lines[0].split()
            assert int(pid) in pids_in_mount_ns(mount_ns(web2.pid))
            assert Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19] == start
            release_lock(t, layout, token)
            assert not web2.path(layout.lock).exists()
        finally:
            t.close()
    finally:
        web2.run(["sh", "-c", 'umount -l /dev; umount -l "$1"', "sh", str(dev)], user=None)
        web2.run(["rm", "-rf", "/srv/locks"])

def test_a_killed_deployers_command_ends_with_it(world):
    p, hosts = world["project"], world["hosts"]
    kill_during_slow_build(world, "ends")
    assert wait_for(lambda: not any(procs(h, HOLD) for h in hosts), timeout=15)
    release_holds(hosts)
    time.sleep(1)                                   # an orphan let go would have written by now
    assert [marks(h) for h in hosts] == ["", ""]
    with build_command(p, QUICK):
        res = p.ok("deploy:test")
    assert "broke the stale lock of" in res.stdout and "nothing of its run ran here any more" in res.stdout
    assert [marks(h) for h in hosts] == ["second\n", "second\n"]
    assert len({*p.links("sites/test")}) == 1


def test_the_next_run_ends_what_a_dead_run_still_runs_before_it_breaks_the_lock(world):
    p, hosts = world["project"], world["hosts"]
    kill_during_slow_build(world, "orphaned", watchdogs=False)
    time.sleep(1)
    orphans = [procs(h, HOLD) for h in hosts]
    assert all(orphans), "with its watchdog off, the dead run's command should still run"
    with build_command(p, QUICK):
        res = p.ok("deploy:test")
    for h in hosts:
        assert f"{h.url}: broke the stale lock of" in res.stdout, res.stdout
    assert res.stdout.count(HOLD) >= 2 and "ended sh -c" in res.stdout, res.stdout
    assert not any(procs(h, HOLD) for h in hosts)
    release_holds(hosts)
    time.sleep(1)
    assert [marks(h) for h in hosts] == ["second\n", "second\n"]     # the orphans never wrote theirs


def test_unlock_ends_what_the_dead_run_still_runs_and_says_so(world):
    p, hosts = world["project"], world["hosts"]
    kill_during_slow_build(world, "unlocked", watchdogs=False)
    time.sleep(1)
    assert all(procs(h, HOLD) for h in hosts)
    res = p.ok("unlock:test")
    assert not any(procs(h, HOLD) for h in hosts)
    assert not any(h.path("/srv/blog/.deploy/lock").exists() for h in hosts)
    for h in hosts:
        assert f"{h.url}: removed the lock of" in res.stdout, res.stdout
    assert res.stdout.count("; ended sh -c") == 2 and HOLD in res.stdout, res.stdout
    release_holds(hosts)
    time.sleep(1)
    assert [marks(h) for h in hosts] == ["", ""]
    with build_command(p, QUICK):
        p.ok("deploy:test")
    assert [marks(h) for h in hosts] == ["second\n", "second\n"]


def test_a_hung_host_that_comes_back_runs_nothing_of_a_dead_run(world):
    """The host stops mid-build (pip installing a new venv), the deployer is killed meanwhile, the host
    comes back: no orphan finishes the venv or writes .deploy-ready; the next run builds it cleanly."""
    p, repo, web2 = world["project"], world["repo"], world["hosts"][1]
    req = (repo.path / "requirements.txt").read_text()
    repo.commit("hung-build", {"requirements.txt": req + "# a new wheelhouse, so a new venv\n",
                               "static/version.txt": "hung-build\n"})
    ready = set(web2.root.glob("blog/releases/*/.deploy-ready"))
    proc = start(p, "deploy:test")
    hung: list[int] = []
    try:
        assert wait_for(lambda: procs(web2, "pip", "install", "/srv/blog/.deploy/venvs/") or proc.poll() is not None,
                        timeout=300)
        assert proc.poll() is None, proc.communicate()
        hung = [pid for pid in pids_in_mount_ns(mount_ns(web2.pid)) if pid != os.getpid()]
        for pid in hung:
            os.kill(pid, signal.SIGSTOP)
        kill(proc)
        time.sleep(2)
    finally:
        if proc.poll() is None:
            kill(proc)
        for pid in hung:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    half = [v for v in web2.root.glob("blog/.deploy/venvs/*") if not (v / ".deploy-complete").exists()]
    assert half, "the host was stopped before its venv was complete"
    assert wait_for(lambda: not procs(web2, "pip", "install"), timeout=15)
    time.sleep(5)
    assert not any((v / ".deploy-complete").exists() for v in half)
    assert set(web2.root.glob("blog/releases/*/.deploy-ready")) == ready
    res = p.ok("deploy:test")
    assert "cannot remove" not in res.stdout + res.stderr
    links = p.links("sites/test")
    assert len(set(links)) == 1 and web2.path(f"/srv/blog/releases/{links[0].rsplit('/', 1)[1]}/.deploy-ready").exists()
    assert all((v / ".deploy-complete").exists() for v in half)


def test_a_dead_runs_migration_finishes_alone_and_the_next_run_waits_for_it(world):
    p, db, web1 = world["project"], world["mariadb"], world["hosts"][0]
    world["repo"].commit("slow", {"posts/migrations/0004_slow_views.py": SLOW_IN_PROD,
                                  "static/version.txt": "slow\n"})
    p.ok("deploy:test")
    proc = start(p, "promote:staging")
    try:
        assert wait_for(lambda: migrating(web1) or proc.poll() is not None, timeout=300)
        assert proc.poll() is None, proc.communicate()
    finally:
        kill(proc)
    time.sleep(1)
    assert migrating(web1), "a dead run's migration goes on alone"
    res = p.ok("promote:staging")
    assert "finishes alone; waiting for it" in res.stdout and "waited" in res.stdout, res.stdout
    # the next run found it complete (not half done): it only took the "after" backup the dead run left out
    assert "its migration had completed: took the missing after backup" in res.stdout, res.stdout
    assert not procs(web1, "manage.py migrate")
    applied = db.query(world["prod"], "SELECT COUNT(*) FROM django_migrations WHERE app = 'posts' "
                                      "AND name = '0004_slow_views'")
    assert applied == [(1,)]
    columns = [r[0] for r in db.query(world["prod"], "SHOW COLUMNS FROM posts_post")]
    assert columns.count("views") == 1
