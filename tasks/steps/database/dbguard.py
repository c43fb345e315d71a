"""dbguard: right before restore:<stage> drops its database, ask the servers themselves whether that
database is in fact the source or a database a live stage runs on (another name or a port forward for
the same server passes the config check; it does not pass this one)."""
from __future__ import annotations

from ...config import Database
from ...errors import StepError
from ...layout import Layout
from ...transport import Transport
from .backup import client_options
from .db import SERVER_IDENTITY_SQL, parse_server_identity


def server_identity(t: Transport, layout: Layout, db: Database) -> tuple:
    """(engine, server or host, schema or file) as seen from the database's backup host."""
    if db.engine == "sqlite":
        return "sqlite", str(t.host), t.run(["realpath", "-m", "--", db.path]).strip()
    with client_options(t, layout, db) as cnf:
        out = t.run(["mysql", f"--defaults-extra-file={cnf}", "-N", "-B", "-e", SERVER_IDENTITY_SQL])
    try:
        return ("mysql", *parse_server_identity(out), db.dbname)
    except ValueError as exc:
        raise StepError(f"{t.host}: [database:{db.name}]: {exc}") from None


def refuse_protected_target(stage: str, target: Database, target_id: tuple,
                            protected: list[tuple[Database, tuple]]) -> None:
    for db, ident in protected:
        if ident == target_id:
            where = f"{ident[-1]} on {ident[1]}" + (f":{ident[2]}" if ident[0] == "mysql" else "")
            raise StepError(f"restore:{stage}: refused: [database:{target.name}] reaches the same database as "
                            f"[database:{db.name}] ({where}); restoring would drop it. Nothing was changed: "
                            f"give [database:{target.name}] a database of its own")
