"""Fixtures over tests/harness.py. Nothing here skips: a machine that cannot run sshd in a mount
namespace or reach MariaDB fails the run with a message saying what is missing (./scripts/test sets the
machine up)."""
from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# the lab's logins by curve25519 (harness.SshHosts.client_config): the suite's time, not the tool's default
os.environ.setdefault("DST_TEST_KEX", "curve25519-sha256")

from harness import (  # noqa: E402
    NASTY_PASSWORD,
    HarnessError,
    MariaDB,
    S3Server,
    SshHosts,
    start_nginx,
)


@pytest.fixture(scope="session")
def ssh_hosts(tmp_path_factory) -> SshHosts:
    """Two fake hosts, web1 and web2, for the whole session (ssh_hosts.add("web3") for a third; it
    stays until the end). A test that kills a host should start it again, or use clean_ssh_hosts."""
    try:
        hosts = SshHosts(tmp_path_factory.mktemp("hosts"), names=("web1", "web2"))
    except HarnessError as e:
        pytest.fail(f"cannot start the SSH test hosts: {e}", pytrace=False)
    yield hosts
    hosts.stop()


@pytest.fixture
def clean_ssh_hosts(ssh_hosts) -> SshHosts:
    """ssh_hosts with every host up and every /srv empty."""
    ssh_hosts.reset()
    return ssh_hosts


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    """moto's S3 HTTP API on 127.0.0.1 for the whole session (buckets: make your own, uniquely named)."""
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb() -> MariaDB:
    db = MariaDB()
    try:
        db.ensure_running()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    return db


class _Names:
    """db_names() / db_names("prod") -> a fresh name like dst_1234_ab12cd_prod (64 chars at most)."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.token = f"dst_{os.getpid()}_{secrets.token_hex(3)}"

    def __call__(self, suffix: str = "db") -> str:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,30}", suffix):
            raise ValueError(f"db name suffix {suffix!r}")
        name = f"{self.token}_{len(self.made)}_{suffix}"
        self.made.append(name)
        return name


@pytest.fixture
def db_names(mariadb):
    """A factory of unique database names; every database of such a name is dropped afterwards."""
    names = _Names()
    yield names
    for name in names.made:
        mariadb.drop_database(name)


@pytest.fixture
def db_users(mariadb):
    """db_users(dbs, password=NASTY_PASSWORD) -> (user, password): a fresh MariaDB user with ALL on dbs,
    for 127.0.0.1 and localhost; dropped afterwards."""
    made: list[str] = []

    def make(dbs=(), password: str = NASTY_PASSWORD, privileges: str = "ALL") -> tuple[str, str]:
        user = f"dst_{secrets.token_hex(5)}"
        made.append(user)
        mariadb.create_user(user, password, dbs, privileges)
        return user, password

    yield make
    for user in made:
        mariadb.drop_user(user)


@pytest.fixture
def nginx_on():
    """nginx_on(host, root_path=..., port=None) -> a started harness.Nginx; all stopped afterwards."""
    started = []

    def start(host, root_path: str = "/srv/blog/sites/current/static", port: int | None = None, **kw):
        try:
            handle = start_nginx(host, port, root_path, **kw)
        except HarnessError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture(scope="module")
def blog_world(ssh_hosts, mariadb, tmp_path_factory):
    """One test module's project: web1 and web2 emptied, fresh prod and test databases with a user whose
    password is NASTY_PASSWORD, the blog in a new git repository, a stages.ini for all three stages."""
    from apprepo import AppRepo
    from project import Project

    ssh_hosts.reset()
    base = tmp_path_factory.mktemp("world")
    token = secrets.token_hex(3)
    prod, test, user = f"dst_prod_{token}", f"dst_test_{token}", f"dst_u_{token}"
    for db in (prod, test):
        mariadb.create_database(db)
    mariadb.create_user(user, NASTY_PASSWORD, [prod, test])
    repo = AppRepo(base / "blog")
    (base / "work").mkdir()
    hosts = [ssh_hosts["web1"], ssh_hosts["web2"]]
    project = Project(base / "work", repo.path, hosts, ssh_hosts.ssh_config, prod, test, user, NASTY_PASSWORD)
    yield {"project": project, "repo": repo, "prod": prod, "test": test, "mariadb": mariadb, "hosts": hosts}
    for h in hosts:
        if not h.running:
            h.start()
    for db in (prod, test):
        mariadb.drop_database(db)
    mariadb.drop_user(user)
