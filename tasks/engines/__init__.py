"""The database engines behind one small interface (base.Engine): the steps ask engine_for(db) and never
branch on db.engine. One module per engine: sqlite.py, mysql.py (MariaDB too); the SQL parser the
rehearsal and the lock-wait report share (sqlcheck.py, sqltext.py); a long command's progress
(streaming.py)."""
from __future__ import annotations

from types import MappingProxyType

from ..config import Database
from ..errors import StepError
from .base import Engine
from .mysql import MySQL
from .sqlite import SQLite

# by the name [database:<name>] engine = gives; PostgreSQL's goes beside them
ENGINES = MappingProxyType({e.name: e for e in (SQLite(), MySQL())})


def engine_for(db: Database) -> Engine:
    """The engine of [database:<name>] engine =."""
    try:
        return ENGINES[db.engine]
    except KeyError:
        raise StepError(f"[database:{db.name}] engine = {db.engine}: no such engine; use one of "
                        f"{', '.join(sorted(ENGINES))}") from None
