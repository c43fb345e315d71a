"""One test module's blog: the hosts up with /srv emptied, fresh prod and test databases in MariaDB with a
user of their own, the blog (examples/blog, or another example) in a new git repository, and a Project on
the one stages.ini (tests/lab/stages_ini.py) with the changes the module asks for.

    with open_world(mariadb, ssh_hosts, base) as world:             # the password in BLOG_DB_PASSWORD
        world["project"].ok("deploy:test")
    with open_world(mariadb, ssh_hosts, base, option_files=True)    # the password in option files on the
                                                                    # hosts only (stages.ini's option_file)

tests/integration/conftest.py makes its blog_world and option_file_world fixtures of it; a module with hosts
of its own (other names, other sshd settings) calls it itself.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import subprocess
from pathlib import Path
from typing import Iterator, Sequence

from .appdb import AppDB
from .apprepo import EXAMPLE, AppRepo
from .common import NASTY_PASSWORD
from .mariadb import Forward, MariaDB, write_option_file
from .postgres import Postgres, ident
from .project import Project
from .sshd import DEPLOY_USER, SshHosts
from .stages_ini import POSTGRESQL, Change, option_files, stages_ini

# option_files: production's file under /srv of every host; the test database's in the login's home ('~/')
PROD_CNF = "/srv/prod-db.cnf"


@contextlib.contextmanager
def open_world(server: MariaDB | Postgres, ssh_hosts: SshHosts, base: Path, names: Sequence[str] = ("web1", "web2"), *,
               changes: Sequence[Change] = (), option_files_on_hosts: bool = False, example: Path = EXAMPLE,
               tag: str = "") -> Iterator[dict]:
    """A dict: project, repo, prod and test (database names), engine ("mysql" or "postgresql"), db (AppDB),
    mariadb (MySQL's server) or postgres (PostgreSQL's), hosts (those of `names`, in order). Afterwards every
    host is up again and the databases, the user and the option files are gone."""
    if isinstance(server, Postgres):
        if option_files_on_hosts:
            raise ValueError("option_files_on_hosts is MySQL's; PostgreSQL's world has the password in the environment")
        with _postgres_world(server, ssh_hosts, base, names, changes, example, tag) as world:
            yield world
        return
    mariadb = server
    ssh_hosts.reset()
    token = secrets.token_hex(3)
    prod, test, user = f"dst_{tag}prod_{token}", f"dst_{tag}test_{token}", f"dst_{tag}u_{token}"
    for db in (prod, test):
        mariadb.create_database(db)
    mariadb.create_user(user, NASTY_PASSWORD, [prod, test])
    hosts = [ssh_hosts[n] for n in names]
    home_cnf = None
    if option_files_on_hosts:
        for h in hosts:
            write_option_file(h.path(PROD_CNF), user, NASTY_PASSWORD, owner=DEPLOY_USER)
        home_cnf = Path(pwd.getpwnam(DEPLOY_USER).pw_dir) / f".dst-{token}.cnf"
        write_option_file(home_cnf, user, NASTY_PASSWORD, owner=DEPLOY_USER)
        changes = [*changes, option_files(PROD_CNF, f"~/{home_cnf.name}")]
    repo = AppRepo(base / "blog", example=example)
    (base / "work").mkdir()
    # with option files the deployer holds no password: BLOG_DB_PASSWORD is empty in its environment
    project = Project(base / "work", repo.path, hosts, ssh_hosts.ssh_config, prod, test, user,
                      "" if option_files_on_hosts else NASTY_PASSWORD, template=stages_ini(*changes))
    try:
        yield {"project": project, "repo": repo, "prod": prod, "test": test, "mariadb": mariadb, "hosts": hosts,
               "engine": "mysql", "db": AppDB(mariadb)}
    finally:
        for h in hosts:
            if not h.running:
                h.start()
        if home_cnf is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(home_cnf)
        for db in (prod, test):
            mariadb.drop_database(db)
        mariadb.drop_user(user)


@contextlib.contextmanager
def _postgres_world(postgres: Postgres, ssh_hosts: SshHosts, base: Path, names: Sequence[str],
                    changes: Sequence[Change], example: Path, tag: str) -> Iterator[dict]:
    """open_world on PostgreSQL: a login role with NASTY_PASSWORD (checked by the server: tests/lab/postgres.py)
    and CREATEDB owning fresh prod and test databases, stages.ini's databases with engine = postgresql, the blog with
    psycopg in its requirements."""
    ssh_hosts.reset()
    token = secrets.token_hex(3)
    prod, test, user = f"dst_{tag}prod_{token}", f"dst_{tag}test_{token}", f"dst_{tag}u_{token}"
    postgres.create_role(user, NASTY_PASSWORD)
    try:
        # a restore drops the test database and creates it again, owned by the role (tasks/engines/postgresql.py)
        postgres.query("postgres", f"ALTER ROLE {ident(user)} CREATEDB")
        for db in (prod, test):
            postgres.create_database(db, owner=user)
        hosts = [ssh_hosts[n] for n in names]
        repo = AppRepo(base / "blog", example=example, engine="postgresql")
        (base / "work").mkdir()
        project = Project(base / "work", repo.path, hosts, ssh_hosts.ssh_config, prod, test, user, NASTY_PASSWORD,
                          template=stages_ini(POSTGRESQL, *changes))
        yield {"project": project, "repo": repo, "prod": prod, "test": test, "postgres": postgres, "hosts": hosts,
               "engine": "postgresql", "db": AppDB(postgres)}
    finally:
        for n in names:
            if not ssh_hosts[n].running:
                ssh_hosts[n].start()
        for db in (prod, test):
            postgres.drop_database(db)
        postgres.drop_role(user)


def deploy_with_test_db_as_prod(world: dict, server_port: int) -> subprocess.CompletedProcess:
    """doit deploy:test of a new commit with [database:test] naming production's database through a port
    forward to the server (127.0.0.1:server_port): the config cannot tell, only the server can. stages.ini
    and the forward are put back afterwards."""
    p, repo = world["project"], world["repo"]
    fwd = Forward(server_port)
    text = p.ini.read_text()
    head, sep, rest = text.partition("[database:test]")
    section, nxt, tail = rest.partition("\n[")
    assert f"name = {world['test']}\n" in section, section
    section = re.sub(r"(?m)^port\s*=.*\n", "", section).replace(
        f"name = {world['test']}\n", f"name = {world['prod']}\nport = {fwd.port}\n")
    p.ini.write_text(head + sep + section + nxt + tail)
    repo.commit("guarded", {"static/version.txt": "guarded\n"})
    try:
        return p.doit("deploy:test")
    finally:
        p.ini.write_text(text)
        fwd.close()
