"""The world's databases as a test reads them, the same calls on either engine (world["db"]), so one test
file runs on MariaDB and on PostgreSQL:

    db.query(name, sql, params)   rows of one statement (%s placeholders on both engines)
    db.tables(name)               base tables, sorted
    db.row_counts(name)           {table: COUNT(*)}, exact
    db.columns(name, table)       the table's column names, sorted ([] when it does not exist)
    db.applied(name)              {"app.migration"} of django_migrations (empty before the first migrate)

Portable SQL only in the tests that use it (NOW(), %s, plain INSERT/SELECT); what only one engine can do
belongs in a test of that engine, through db.server (MariaDB or Postgres)."""
from __future__ import annotations

from typing import Sequence

from .mariadb import MariaDB
from .postgres import Postgres


class AppDB:
    def __init__(self, server: MariaDB | Postgres):
        self.server = server
        self.engine = "postgresql" if isinstance(server, Postgres) else "mysql"

    def query(self, db: str, sql: str, params: Sequence | dict | None = None) -> list[tuple]:
        return self.server.query(db, sql, params)

    def tables(self, db: str) -> list[str]:
        return self.server.tables(db)

    def row_counts(self, db: str) -> dict[str, int]:
        return self.server.row_counts(db)

    def columns(self, db: str, table: str) -> list[str]:
        if self.engine == "mysql":
            rows = self.server.query(None, "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                                           "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (db, table))
        else:
            rows = self.server.query(db, "SELECT column_name FROM information_schema.columns "
                                         "WHERE table_schema = 'public' AND table_name = %s", (table,))
        return sorted(r[0] for r in rows)

    def applied(self, db: str) -> set[str]:
        if "django_migrations" not in self.tables(db):
            return set()
        return {f"{a}.{n}" for a, n in self.query(db, "SELECT app, name FROM django_migrations")}
