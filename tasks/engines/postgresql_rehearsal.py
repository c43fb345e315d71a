"""PostgreSQL's part of the migration rehearsal (steps/migration/rehearsal_copy.py): the copy's schema, sizes
and write probe (hostside/rehearsal_probe_pg.py), where they are read, and the judge of the SQL
(pg_sqlcheck.py). The engine class (postgresql.py) inherits it.

- password_env: read from this machine with psycopg 3 through the SSH tunnel over the run's own connection;
  the password stays in this process's memory (it came from the environment), never on a command line or in
  a file. libpq is given the tunnel's end as hostaddr and the database's host name as host, so sslmode =
  verify-full checks the server's certificate against the name the hosts use.
- passfile: this machine has no password (it never reads the hosts' password file): the runner on the host
  reads the copy and runs the probe through the app's own connection (libpq reads PGPASSFILE there), as for
  MySQL's option_file.
"""
from __future__ import annotations

import ipaddress
from typing import Callable

from ..config import Database
from ..hostside import rehearsal_probe_pg
from .base import Engine
from .pg_sql import CONNECT_TIMEOUT
from .pg_sqlcheck import Column, PgPlanCheck, columns_from_rows

# the probe's sessions, as pg_stat_activity shows them (not "doit-stages...": that names the tool's own
# migration, which the lock-wait report looks for)
PROBE_APP_NAME = "rehearsal probe (doit-stages)"


def probe_password(db: Database) -> str:
    """password_env's password, kept in memory only. Refuses a passfile database: its password stays on the
    hosts (the rehearsal probes such a database there)."""
    if not db.password_env:
        raise ValueError(f"[database:{db.name}] has no password_env: its passfile stays on the hosts, and this "
                         "machine does not read it")
    return db.password()


def connect_kwargs(db: Database, host: str, port: int, password: str) -> dict:
    """psycopg.connect's arguments for the copy at host:port (the tunnel's end, or the database itself)."""
    kwargs = dict(dbname=db.dbname, user=db.user, password=password, port=port, autocommit=True,
                  connect_timeout=CONNECT_TIMEOUT, application_name=PROBE_APP_NAME)
    if host != db.host and _is_address(host):
        kwargs.update(host=db.host, hostaddr=host)   # reached at the tunnel, verified as db.host
    else:
        kwargs["host"] = host
    if db.sslmode:
        kwargs["sslmode"] = db.sslmode
    return kwargs


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def connect(kwargs: dict):
    import psycopg
    return psycopg.connect(**kwargs)


class PostgreSQLRehearsal(Engine):
    """The rehearsal's methods of the PostgreSQL engine."""

    probe = rehearsal_probe_pg
    host_password_key = "passfile"

    def reads_copy_on_host(self, db: Database) -> bool:
        """A database whose password this machine does not have (passfile): read and probe it on the host."""
        return not db.password_env

    def copy_columns(self, rows: list) -> dict[str, dict[str, Column]]:
        return columns_from_rows(rows)

    def copy_connector(self, db: Database, host: str, port: int) -> Callable[[], object]:
        kwargs = connect_kwargs(db, host, port, probe_password(db))
        return lambda: connect(kwargs)

    def plan_check(self, before: dict[str, dict[str, Column]]) -> PgPlanCheck:
        return PgPlanCheck(before)
