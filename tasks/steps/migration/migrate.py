"""migrate: the release's migrations applied to the stage's database, run once, on the stage's primary host.

A database that is not a throwaway copy (the stage has no restore_from) is migrated between two verified
backups, from a recorded intent to its outcome (production_migration.py), with bounded lock waits
(migrate_bounded.py). A throwaway copy is rehearsed instead (rehearsal.py).

"Pending" is asked of the real database: for a Django migrate_command (`manage.py`, `django-admin`, or a
buildout control script named `django`, e.g. `bin/django migrate`), the same command with `--check`; for any
other command, a marker recording which release was last migrated on this stage.
"""
from __future__ import annotations

import posixpath
import re
from typing import Sequence

from ...config import Config, Database, Stage
from ...engines import engine_for
from ...errors import StepError
from ...layout import Layout
from ...runtime.common import last_line, read_text, write_file
from ...transport import Transport
from ...watchdog import let_finish
from ..environment import app_command

# what a shell says of a process it saw end by a signal: the host-side watchdog ends its relay that way when
# the program is done, so it can follow the program's own last line on stderr
JOB_STATUS = re.compile(r"^(?:\S+: (?:line )?\d+: +(?:\d+ )?)?(?:Terminated|Killed|Hangup)(?: .*)?$")

# Programs that take Django's management commands: djangorecipe names its script after the part, [django].
DJANGO_PROGRAMS = ("manage.py", "django-admin", "django")


def check_argv(migrate_argv: Sequence[str]) -> list[str] | None:
    """The command that exits 0 when nothing is pending, if migrate_command is Django's migrate."""
    argv = list(migrate_argv)
    django = [i for i, a in enumerate(argv) if posixpath.basename(a) in DJANGO_PROGRAMS]
    if django and "migrate" in argv[django[0] + 1:]:
        return [a for a in argv if a not in ("--noinput", "--no-input")] + ["--check"]
    return None


def is_migrated(t: Transport, layout: Layout, config: Config, stage: Stage, rid: str) -> bool:
    check = check_argv(config.project.migrate_argv)
    if check is None:
        return (read_text(t, layout.migrated_marker(stage.name)) or "").strip() == rid
    return t.call(app_command(layout, stage.name, rid, check))[0] == 0


def run_migrations(t: Transport, layout: Layout, config: Config, stage: Stage, rid: str) -> str:
    """Returns the command's output; raises StepError naming stage, host and the last error line. If this
    run dies meanwhile, the migration finishes alone (watchdog.let_finish)."""
    argv = app_command(layout, stage.name, rid, list(config.project.migrate_argv))
    code, out, err = t.call(let_finish(argv))
    if code != 0:
        raise migrate_failed(config, stage, t, code, out, err)
    record_migrated(t, layout, stage, rid)
    return out


def error_line(*texts: str) -> str:
    """A failed program's own last line (a Python traceback's last line is the exception), not a shell's
    word on how a process around it ended."""
    for text in texts:
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        lines = [ln for ln in lines if not JOB_STATUS.match(ln)]
        if lines:
            return lines[-1]
    return last_line(*texts)


def migrate_failed(config: Config, stage: Stage, t: Transport, code: int, out: str, err: str) -> StepError:
    return StepError(f"migrate:{stage.name}: {config.project.migrate_command!r} failed on {t.host} "
                     f"(exit {code}): {why_failed(config.stage_database(stage), err, out)}")


def why_failed(db: Database | None, *texts: str) -> str:
    """The program's own last line, or, when the database server refused the app's login (its password is
    the one the tool wrote into DATABASE_URL, or the option file's), the key that supplies it."""
    hint = engine_for(db).access_denied(db, "\n".join(t or "" for t in texts)) if db is not None else None
    return hint or error_line(*texts)


def record_migrated(t: Transport, layout: Layout, stage: Stage, rid: str) -> None:
    write_file(t, layout.migrated_marker(stage.name), rid.encode() + b"\n", "644", public=True)
