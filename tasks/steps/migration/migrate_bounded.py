"""The production migration with bounded lock waits: a Django `manage.py migrate` on MySQL/MariaDB (and
PostgreSQL) runs through hostside/migrate_runner.py (run as a file: hostfiles.py), whose session waits at most
[database:<name>] migration_lock_timeout for a lock (as Strong Migrations does, about 10 s) instead of the
server's day or year, during which every app query on the table would queue behind the waiting ALTER. When
it gives up, the migration is tried again after as long a pause, migration_lock_retries times, then the step
stops with one line naming the connections that hold the lock up (lockwait.py). Not tried again: a
migration that had changed the database before it waited (MySQL/MariaDB commit each DDL statement, and
Django records a migration only once it ends, so a second attempt would run its first operations again:
"Duplicate column"). On PostgreSQL the same runner bounds lock_timeout; Django runs each migration in a
transaction there, so the blocked one left nothing applied and is tried again (unless it says atomic =
False and had changed the database). Any other migrate_command, or sqlite, runs as it is.
"""
from __future__ import annotations

import posixpath
import time
from typing import Sequence

from ...config import Config, Stage
from ...engines import engine_for
from ...errors import StepError
from ...layout import Layout
from ...transport import Transport
from ...watchdog import let_finish
from ..environment import app_command
from ..hostfiles import program, ship_programs
from .lockwait import failure_line, lock_event, retry_line, runner_event
from .migrate import migrate_failed, record_migrated, run_migrations

EXIT_LOCKED = 75  # the runner's exit code when a statement gave up waiting for a lock


def bounded_argv(migrate_argv: Sequence[str], seconds: int, where: str = ".") -> list[str] | None:
    """[python options..., <where>/migrate_runner.py, seconds, manage.py, migrate, ...] for a `manage.py
    migrate` command (where: the host's directory of the programs); None for any other (its lock waits are
    the project's own business)."""
    argv = list(migrate_argv)
    idx = next((i for i, a in enumerate(argv) if posixpath.basename(a) == "manage.py"), None)
    if idx is None or argv[idx + 1:idx + 2] != ["migrate"]:
        return None
    # `./manage.py migrate` ran by its shebang: python3 is the name every host with Python 3 has
    return [*(argv[:idx] or ["python3"]), program(where, "migrate_runner.py"), str(seconds), *argv[idx:]]


def run_bounded_migrations(t: Transport, layout: Layout, config: Config, stage: Stage, rid: str,
                           pause=time.sleep) -> str:
    db = config.stage_database(stage)
    bounded = engine_for(db).bounded_lock_waits
    argv = bounded_argv(config.project.migrate_argv, db.migration_lock_timeout) if bounded else None
    if argv is None:
        return run_migrations(t, layout, config, stage, rid)
    argv = bounded_argv(config.project.migrate_argv, db.migration_lock_timeout, ship_programs(t, layout))
    attempts, changed = db.migration_lock_retries + 1, False
    for attempt in range(1, attempts + 1):
        # if this run dies meanwhile, the attempt finishes alone: its DDL cannot be undone halfway, and a
        # killed client would leave its ALTER running in the server anyway (watchdog.py)
        code, out, err = t.call(let_finish(app_command(layout, stage.name, rid, argv)))
        if code == 0:
            record_migrated(t, layout, stage, rid)
            return out
        event = lock_event(out) if code == EXIT_LOCKED else None
        if event is None:
            failed = migrate_failed(config, stage, t, code, out, err)
            said = runner_event(out, "failed")    # none (a runner that did not say): assume it changed
            failed.changed = changed or not said or said.get("changes") != 0
            raise failed
        changed = changed or event.get("changes") != 0   # a runner that did not say: assume it changed
        if event.get("unrecorded"):   # the blocked migration had begun: another attempt would repeat its start
            raise LockGaveUp(failure_line(stage.name, db.name, event, out, attempt, True, partial=True), True)
        if attempt < attempts:
            print(f"   {retry_line(stage.name, event, out, attempt, attempts)}", flush=True)
            pause(db.migration_lock_timeout)
    raise LockGaveUp(failure_line(stage.name, db.name, event, out, attempts, changed), changed)


class LockGaveUp(StepError):
    """The migration gave up waiting for a lock; `changed`: did any attempt change the database before?"""

    def __init__(self, message: str, changed: bool):
        super().__init__(message)
        self.changed = changed
