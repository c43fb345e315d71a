"""The deploying machine reading a MySQL/MariaDB database itself, for a database with password_env: the
rehearsal's schema and size reads and its write probe (hostside/rehearsal_probe.py), with
mysql-connector-python (pure Python) through an SSH tunnel to the database as the hosts see it. The
password stays in this process's memory (it came from the environment); it is never written anywhere and
never on a command line.

A database with option_file is never read from here: its password stays on the hosts, and the rehearsal
reads and probes it there, through the app's own connection (hostside/rehearsal_runner.py).
"""
from __future__ import annotations

from ...config import Database


def credentials(db: Database) -> tuple[str, str]:
    """(user, password) of a password_env database, kept in memory only. Refuses an option_file one: this
    machine never reads the option file (the rehearsal probes such a database on the host)."""
    if not db.password_env:
        raise ValueError(f"[database:{db.name}] has no password_env: its option_file stays on the hosts, "
                         "and this machine does not read it")
    return db.user, db.password()


def connect(host: str, port: int, db: Database, user: str, password: str):
    import mysql.connector
    return mysql.connector.connect(host=host, port=port, user=user, password=password, database=db.dbname,
                                   use_pure=True, autocommit=True, connection_timeout=10)
