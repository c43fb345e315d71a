"""The integration tests' fixtures over the lab (tests/lab/). Nothing here skips: a machine that cannot run
sshd in a mount namespace or reach MariaDB fails the run with a message saying what is missing
(./scripts/test sets the machine up)."""
from __future__ import annotations

import os
import re
import secrets

import pytest

from tests.lab.common import NASTY_PASSWORD, HarnessError
from tests.lab.mariadb import MariaDB
from tests.lab.nginx import start_nginx
from tests.lab.postgres import Postgres
from tests.lab.s3 import S3Server
from tests.lab.sshd import SshHosts
from tests.lab.world import open_world

# the lab's logins by curve25519 (SshHosts.client_config): the suite's time, not the tool's default
os.environ.setdefault("DST_TEST_KEX", "curve25519-sha256")


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


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    """The test PostgreSQL as its superuser; roles made by create_role log in with their password only."""
    pg = Postgres()
    try:
        pg.ensure_running()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    return pg


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
    """nginx_on(host, root_path=..., port=None) -> a started tests.lab.nginx.Nginx; all stopped afterwards."""
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
    """One test module's project (tests/lab/world.py): web1 and web2 emptied, fresh prod and test databases
    with a user whose password is NASTY_PASSWORD (in BLOG_DB_PASSWORD), the blog in a new git repository, a
    stages.ini for all three stages."""
    with open_world(mariadb, ssh_hosts, tmp_path_factory.mktemp("world")) as world:
        yield world


@pytest.fixture(scope="module", params=("mysql", "postgresql"))
def engine(request) -> str:
    """The database engine of a module's engine_world: a module using it runs once on each, MySQL first (ids
    [mysql] and [postgresql]). A test of one engine only: @only_on("mysql") (tests/integration/engines.py)."""
    return request.param


@pytest.fixture(scope="module")
def engine_world(engine, request, ssh_hosts, tmp_path_factory):
    """blog_world on `engine`: on postgresql a role whose password is NASTY_PASSWORD (in BLOG_DB_PASSWORD)
    owning fresh prod and test databases, stages.ini's databases with engine = postgresql, psycopg in the
    blog's requirements. world["db"] reads either engine's databases (tests/lab/appdb.py)."""
    server = request.getfixturevalue("mariadb" if engine == "mysql" else "postgres")
    with open_world(server, ssh_hosts, tmp_path_factory.mktemp(f"world-{engine}")) as world:
        yield world


@pytest.fixture(scope="module")
def option_file_world(ssh_hosts, mariadb, tmp_path_factory):
    """blog_world with option_file instead of password_env for both databases: the password is in MySQL
    option files that exist only on the hosts (production's at world.PROD_CNF under /srv, the test
    database's in the login's home), never in the deployer's environment."""
    with open_world(mariadb, ssh_hosts, tmp_path_factory.mktemp("optfile"), option_files_on_hosts=True) as world:
        yield world
