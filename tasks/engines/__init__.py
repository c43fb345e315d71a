"""The database engines behind one small interface (base.Engine): the steps ask engine_for(db) and never
branch on db.engine. One module per engine: sqlite.py, mysql.py (MariaDB too), postgresql.py (its pure parts:
pg_sql.py, pg_sqlcheck.py); the SQL parser the rehearsal and the lock-wait report share (sqlcheck.py,
sqltext.py); a long command's progress (streaming.py)."""
from __future__ import annotations

from types import MappingProxyType

from ..config import Database
from ..errors import StepError
from .base import Engine
from .mysql import MySQL
from .postgresql import PostgreSQL
from .sqlite import SQLite

# by the name [database:<name>] engine = gives
ENGINES = MappingProxyType({e.name: e for e in (SQLite(), MySQL(), PostgreSQL())})


def engine_for(db: Database) -> Engine:
    """The engine of [database:<name>] engine =."""
    try:
        return ENGINES[db.engine]
    except KeyError:
        raise StepError(f"[database:{db.name}] engine = {db.engine}: no such engine; use one of "
                        f"{', '.join(sorted(ENGINES))}") from None
