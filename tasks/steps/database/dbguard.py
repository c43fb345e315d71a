"""dbguard: right before restore:<stage> drops its database, ask the servers themselves whether that
database is in fact the source or a database a live stage runs on (another name or a port forward for
the same server passes the config check; it does not pass this one). An engine that guards_in_load asks
it in the DROP's own session (restore.py gives it the protected identities)."""
from __future__ import annotations

from ...config import Database
from ...engines import engine_for
from ...errors import StepError


def refuse_protected_target(stage: str, target: Database, target_id: tuple,
                            protected: list[tuple[Database, tuple]]) -> None:
    for db, ident in protected:
        if ident == target_id:
            raise refused(stage, target, db, ident)


def refused(stage: str, target: Database, db: Database, ident: tuple) -> StepError:
    """The refusal: target is db (ident: their identity, as the server gave it)."""
    where = engine_for(db).describe_identity(ident)
    return StepError(f"restore:{stage}: refused: [database:{target.name}] reaches the same database as "
                     f"[database:{db.name}] ({where}); restoring would drop it. Nothing was changed: "
                     f"give [database:{target.name}] a database of its own")
