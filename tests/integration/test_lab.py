"""The lab itself (tests/lab/): real hosts with separate /srv, strict host keys, the nasty password through an
option file, nginx following a link switch."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.common import NASTY_PASSWORD
from tests.lab.mariadb import option_file_value, write_option_file
from tests.lab.sshd import mount_ns

PWNED = Path("/tmp/pwned")


def test_hosts_see_separate_srv(clean_ssh_hosts):
    web1, web2 = clean_ssh_hosts["web1"], clean_ssh_hosts["web2"]
    assert web1.port != web2.port and web1.pid != web2.pid
    assert web1.url == f"ssh://deploy@127.0.0.1:{web1.port}"

    r = web1.ssh("mkdir -p /srv/blog/sites && echo one > /srv/blog/sites/marker && id -un")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "deploy"
    assert web1.path("/srv/blog/sites/marker").read_text() == "one\n"
    assert web2.ssh("test -e /srv/blog").returncode == 1
    assert not web2.path("/srv/blog").exists()
    assert not Path("/srv/blog/sites/marker").exists()          # the machine's own /srv is untouched

    r = web2.run(["sh", "-c", "mkdir -p /srv/blog && echo two > /srv/blog/marker && stat -c %U /srv/blog"])
    assert r.returncode == 0 and r.stdout.strip() == "deploy", r.stderr
    assert web2.path("/srv/blog/marker").read_text() == "two\n"
    assert web1.run(["cat", "/srv/blog/sites/marker"]).stdout == "one\n"
    assert web1.run(["id", "-u"], user=None).stdout.strip() == "0"
    with pytest.raises(ValueError):
        web1.path("/etc/passwd")
    web2.write_file("/srv/blog/shared/prod.env", "X=1\n", 0o600)
    assert web2.run(["cat", "/srv/blog/shared/prod.env"]).stdout == "X=1\n"     # deploy can read it
    assert web2.run(["stat", "-c", "%U %a", "/srv/blog/shared"]).stdout == "deploy 755\n"


def test_alias_and_control_master(ssh_hosts):
    web1 = ssh_hosts["web1"]
    cfg = str(ssh_hosts.ssh_config)
    r = subprocess.run(["ssh", "-F", cfg, "web1", "hostname >/dev/null && echo ok"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    check = web1.ssh(options=["-O", "check"])
    assert check.returncode == 0, check.stderr                  # the master persists between calls
    web1.close_master()
    assert web1.ssh(options=["-O", "check"]).returncode != 0


def test_strict_host_key_checking(ssh_hosts, tmp_path):
    web1, web2 = ssh_hosts["web1"], ssh_hosts["web2"]
    r = subprocess.run(["ssh", "-F", str(ssh_hosts.ssh_config), "-p", str(web1.port), "127.0.0.1", "true"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 0, r.stderr

    # No multiplexing here: a running master would answer without any host key check at all.
    def try_with(known_hosts_text: str) -> subprocess.CompletedProcess:
        kh = tmp_path / "known_hosts"
        kh.write_text(known_hosts_text)
        cfg = tmp_path / "ssh_config"
        cfg.write_text(ssh_hosts.client_config(kh, control_path=None))
        return subprocess.run(["ssh", "-F", str(cfg), "-p", str(web1.port), "127.0.0.1", "true"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)

    assert try_with(web1.known_hosts_line + "\n").returncode == 0
    unknown = try_with("")
    assert unknown.returncode == 255 and "Host key verification failed" in unknown.stderr
    wrong = try_with(f"[127.0.0.1]:{web1.port} {web2.public_host_key}\n")
    assert wrong.returncode == 255 and "Host key verification failed" in wrong.stderr
    assert not (tmp_path / "known_hosts").read_text().strip().count("\n")   # nothing was added


def test_kill_one_host_and_start_it_again(ssh_hosts):
    web1, web2 = ssh_hosts["web1"], ssh_hosts["web2"]
    assert web2.ssh("echo kept > /srv/kept").returncode == 0
    old_pid = web2.pid
    web2.kill()
    try:
        assert not web2.running
        r = web2.ssh("true")
        assert r.returncode == 255
        assert web1.ssh("true").returncode == 0                 # the other host is unaffected
        assert web2.run(["cat", "/srv/kept"]).stdout == "kept\n"   # its disk is still there
    finally:
        web2.start()
    assert web2.pid != old_pid
    assert web2.ssh("cat /srv/kept").stdout == "kept\n"
    web2.run(["rm", "/srv/kept"], check=True)


def test_killing_a_host_never_touches_a_namespace_made_after_its_own_emptied(ssh_hosts):
    """A host whose last process died keeps its mount namespace (pinned) until kill() is done with it; else
    the kernel gives that namespace's number to the next one made (another worker's host starting), and
    kill(), which ends every process in the namespace of that number, would end that one's."""
    web2 = ssh_hosts["web2"]
    gone = mount_ns(web2.pid)
    os.kill(web2.pid, signal.SIGKILL)                 # the host's only process: its namespace empties
    web2._proc.wait()
    other = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while mount_ns(other.pid) in (None, mount_ns(os.getpid())) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mount_ns(other.pid) not in (None, gone, mount_ns(os.getpid()))
        web2.kill()
        assert other.poll() is None, "kill() ended a process of another namespace"
    finally:
        other.kill()
        other.wait()
        web2.start()
    assert web2.ssh("true").returncode == 0


def test_third_host(ssh_hosts):
    web3 = ssh_hosts.add("web3")
    assert ssh_hosts.add("web3") is web3
    assert web3.ssh("test -d /srv && id -un").stdout == "deploy\n"
    assert web3.known_hosts_line in ssh_hosts.known_hosts.read_text()
    assert {h.name for h in ssh_hosts} >= {"web1", "web2", "web3"}


def test_nginx_follows_a_link_switch(clean_ssh_hosts, nginx_on):
    web1, web2 = clean_ssh_hosts["web1"], clean_ssh_hosts["web2"]
    setup = ("mkdir -p /srv/blog/releases/a/static /srv/blog/releases/b/static /srv/blog/sites && "
             "echo A > /srv/blog/releases/a/static/index.txt && "
             "echo B > /srv/blog/releases/b/static/index.txt && "
             "ln -s ../releases/a /srv/blog/sites/current")
    assert web1.run(["sh", "-c", setup]).returncode == 0
    nginx = nginx_on(web1)
    other = nginx_on(web2)                       # web2 has no site: nginx there sees its own /srv
    assert nginx.get("/index.txt") == (200, b"A\n")
    assert other.get("/index.txt")[0] == 404

    switch = "ln -s ../releases/b /srv/blog/sites/.next && mv -T /srv/blog/sites/.next /srv/blog/sites/current"
    assert web1.run(["sh", "-c", switch]).returncode == 0
    assert nginx.get("/index.txt") == (200, b"B\n")
    assert web1.path("/srv/blog/sites/current").resolve() == web1.path("/srv/blog/releases/b")


def test_option_file_value_quoting():
    assert option_file_value('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        option_file_value("line\nbreak")


def test_nasty_password_through_option_file(mariadb, db_names, db_users, tmp_path, ssh_hosts):
    PWNED.unlink(missing_ok=True)
    db = db_names("nasty")
    mariadb.create_database(db)
    mariadb.query(db, "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(20))")
    mariadb.query(db, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    user, password = db_users([db])
    assert password == NASTY_PASSWORD
    assert all(c in password for c in " ;$(`'\"#\\")

    cnf = write_option_file(tmp_path / "client.cnf", user, password)
    assert stat.S_IMODE(cnf.stat().st_mode) == 0o600
    r = subprocess.run(mariadb.client_argv(cnf, "-N", "-B", "-e", "SELECT CURRENT_USER(), COUNT(*) FROM t",
                                           db), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"{user}@127.0.0.1", "3"]

    dump = subprocess.run(mariadb.client_argv(cnf, "--single-transaction", "--quick", "--routines",
                                              "--triggers", "--events", "--hex-blob", db, tool="mysqldump"),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert dump.returncode == 0, dump.stderr
    assert "INSERT INTO `t` VALUES" in dump.stdout and "-- Dump completed" in dump.stdout

    # The same file read by deploy on a host (the way the tool runs the client there).
    web1 = ssh_hosts["web1"]
    web1.run(["mkdir", "-p", "/srv/dbtest"], check=True)
    write_option_file(web1.path("/srv/dbtest/client.cnf"), user, password, owner="deploy")
    r = web1.ssh(f"mariadb --defaults-extra-file=/srv/dbtest/client.cnf -N -e 'SELECT COUNT(*) FROM t' {db}")
    assert (r.returncode, r.stdout) == (0, "3\n"), r.stderr
    web1.run(["rm", "-r", "/srv/dbtest"], check=True)

    # The file really is what logs in: one wrong character and the server says no.
    bad = write_option_file(tmp_path / "bad.cnf", user, password[:-1] + "y")
    r = subprocess.run(mariadb.client_argv(bad, "-e", "SELECT 1"), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "Access denied" in r.stderr
    assert not PWNED.exists()


@pytest.mark.parametrize("password", ["a#b", " lead", "trail ", "'quoted'", '"dq"', "a\\nb", "ab\\",
                                      "a\\\\b", "#", "semi ; colon", "ünï"])
def test_option_file_keeps_password(mariadb, db_users, tmp_path, password):
    user, _ = db_users([], password=password)
    cnf = write_option_file(tmp_path / "c.cnf", user, password)
    r = subprocess.run(mariadb.client_argv(cnf, "-N", "-e", "SELECT CURRENT_USER()"), capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr


def test_mariadb_helpers(mariadb, db_names, db_users):
    assert "MariaDB" in mariadb.version()
    db = db_names()
    mariadb.create_database(db)
    assert mariadb.database_exists(db)
    mariadb.query(db, "CREATE TABLE a (id INT PRIMARY KEY)")
    mariadb.query(db, "CREATE TABLE `b``q` (id INT PRIMARY KEY)")
    mariadb.query(db, "CREATE VIEW v AS SELECT id FROM a")
    mariadb.query(db, "INSERT INTO a VALUES (%s), (%s)", (1, 2))
    assert mariadb.tables(db) == ["a", "b`q"]
    assert mariadb.row_counts(db) == {"a": 2, "b`q": 0}
    assert mariadb.query(db, "SELECT id FROM a ORDER BY id") == [(1,), (2,)]
    sums = mariadb.checksums(db)
    assert set(sums) == {"a", "b`q"} and sums["a"] != sums["b`q"]
    user, password = db_users([db])
    con = mariadb.connect(db, user=user, password=password)
    con.close()
    mariadb.drop_database(db)
    assert not mariadb.database_exists(db)
    assert os.geteuid() == 0


def test_testinfra_reaches_a_host_through_the_ssh_config(ssh_hosts):
    import testinfra

    web1 = ssh_hosts["web1"]
    host = testinfra.get_host(f"{web1.url}?ssh_config={ssh_hosts.ssh_config}")
    assert host.run("id -un").stdout.strip() == "deploy"
    assert host.file("/srv").is_directory and host.file("/srv").user == "deploy"
