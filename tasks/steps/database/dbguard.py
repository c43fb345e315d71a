"""dbguard: right before restore:<stage> drops its database, ask the servers themselves whether that
database is in fact the source or a database a live stage runs on (another name or a port forward for
the same server passes the config check; it does not pass this one)."""
from __future__ import annotations

from ...config import Database
from ...engines import engine_for
from ...errors import StepError


def refuse_protected_target(stage: str, target: Database, target_id: tuple,
                            protected: list[tuple[Database, tuple]]) -> None:
    for db, ident in protected:
        if ident == target_id:
            where = engine_for(db).describe_identity(ident)
            raise StepError(f"restore:{stage}: refused: [database:{target.name}] reaches the same database as "
                            f"[database:{db.name}] ({where}); restoring would drop it. Nothing was changed: "
                            f"give [database:{target.name}] a database of its own")
