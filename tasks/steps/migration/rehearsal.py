"""rehearsal: migrate:<stage> on a fresh copy of production, measured. One Python process on the stage's
primary host (hostside/rehearsal_runner.py, run as a file through the app wrapper) reports the pending plan
and each migration's SQL, waits while the copy's schema and table sizes are read and the write probe
starts (from this machine, or for option_file on the host: rehearsal_copy.py), then runs Django's own
migrate; its output is read as it comes and each migration timed on arrival here. The report goes to
.deploy/rehearsals/<release>.json (+ .md) on that host; its sha256 is recorded first where that host cannot
rewrite it (rehearsal_guard.py). The copy is restore:<stage>'s for this release while no rehearsal began on
it; else a new backup of production is restored first (copy_to_rehearse).
"""
from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timezone
from typing import Callable, Sequence

from ...config import Config, Database, Stage
from ...errors import StepError
from ...layout import Layout
from ...runtime.common import json_or_none, read_text, write_file
from ...session import Session
from ...transport import CommandFailed, Transport
from ..database import backup as backup_step
from ..database import restore as restore_step
from ..environment import app_command
from ..hostfiles import program, ship_programs
from .migrate import run_migrations, why_failed
from .rehearsal_copy import CopyProbe, reads_on_host
from .rehearsal_report import MigrateOutput, markdown


def runner_argv(migrate_argv: Sequence[str], mode: str = "rehearse", where: str = ".") -> list[str] | None:
    """<python> <where>/rehearsal_runner.py <mode> manage.py migrate [options] (where: the host's directory
    of the programs, hostfiles.py); None when migrate_command is not Django's `manage.py migrate`."""
    argv = list(migrate_argv)
    idx = next((i for i, a in enumerate(argv) if a.endswith("manage.py")), None)
    if idx is None or argv[idx + 1:idx + 2] != ["migrate"]:
        return None
    python = argv[:idx] or ["python"]
    return [*python, program(where, "rehearsal_runner.py"), mode, argv[idx], *argv[idx + 1:]]


def _failed(stage: Stage, t: Transport, exc: CommandFailed, progress: dict | None = None,
            db: Database | None = None) -> StepError:
    """What failed, from how far the runner got (progress: _run's), and the program's own last line."""
    progress = progress or {}
    if progress.get("running"):
        what = f"migration {progress['running']} failed"
    elif progress.get("plan"):
        what = "the rehearsal's `manage.py migrate` failed"
    else:
        what = "reading the pending migrations with the release's Django failed"
    return StepError(f"migrate:{stage.name}: {what} on {t.host} (exit {exc.retcode}): {why_failed(db, exc.stderr)}")


def production_plan(t: Transport, layout: Layout, config: Config, stage: Stage,
                    rid: str) -> tuple[list[str], list[str]] | None:
    """(applied, pending): the migrations applied to the stage's database (its django_migrations) and those
    the release would apply, in order, read by the release's own Django; None for a non-Django
    migrate_command."""
    if runner_argv(config.project.migrate_argv) is None:
        return None
    argv = runner_argv(config.project.migrate_argv, "applied", ship_programs(t, layout))
    try:
        out = t.run(app_command(layout, stage.name, rid, argv))
    except CommandFailed as exc:
        raise _failed(stage, t, exc, db=config.stage_database(stage)) from None
    plan = next((e[1] for e in MigrateOutput().feed(out) if e[0] == "plan"), None)
    if plan is None:
        raise StepError(f"migrate:{stage.name}: could not read the applied migrations on {t.host}")
    return plan["applied"], plan.get("pending", [])


def read_report(t: Transport, layout: Layout, rid: str) -> dict | None:
    return json_or_none(read_text(t, layout.rehearsal(rid)))


def read_report_bytes(t: Transport, layout: Layout, rid: str) -> bytes | None:
    """The report exactly as the host holds it (its sha256 is what the guard compares)."""
    text = read_text(t, layout.rehearsal(rid))
    return None if text is None else text.encode()


def set_aside(t: Transport, layout: Layout, rid: str, why: str) -> str:
    """A report the guard will not use is kept (renamed <id>.<why>.json), so that the next deploy rehearses
    again on a fresh copy. Returns the new path."""
    aside = layout.rehearsal(rid, aside=why)
    t.call(["mv", "-f", "--", layout.rehearsal(rid), aside])
    return aside


def report_bytes(report: dict) -> bytes:
    return json.dumps(report, indent=1).encode() + b"\n"


def write_report(t: Transport, layout: Layout, report: dict) -> None:
    """The .md first, the .json last: the JSON is what makes migrate:<stage> done."""
    rid = report["release"]
    t.run(["mkdir", "-p", "-m", "755", layout.rehearsals])
    write_file(t, layout.rehearsal_md(rid), markdown(report).encode(), "644")
    write_file(t, layout.rehearsal(rid), report_bytes(report), "644")


def copy_to_rehearse(session: Session, stage: Stage, rid: str, restore: Callable[[], None],
                     say: Callable[[str], None]) -> tuple[dict | None, str]:
    """The restore marker of the copy to rehearse on, and why that copy: the one restore:<stage> made for
    this release, unless a rehearsal already began on it (it may be migrated, wholly or in part); then a new
    backup of production is taken and restore() restores it first."""
    db, src = session.config.stage_database(stage), session.config.databases[stage.restore_from]
    marker = restore_step.restored(session, db)
    if restore_step.is_fresh(marker, rid):
        return marker, f"the copy restore:{stage.name} made for {rid}, untouched since"
    was = (f"a rehearsal of {marker['release']} already began on the copy of {marker['backup']}"
           if marker and marker.get("release") else f"{db.name} holds no copy restore:{stage.name} recorded")
    say(f"{was}: taking a new backup of {src.name} and restoring it, so that the rehearsal runs on a fresh copy")
    backup_step.take_backup(session, src, reason=f"for the rehearsal of {rid}")
    restore()
    return restore_step.restored(session, db), f"restored just now for {rid}"


def rehearse(t: Transport, layout: Layout, config: Config, stage: Stage, rid: str, backup: str | None,
             begin=lambda: None) -> dict:
    """Runs the rehearsal and returns its report; the caller records and writes it (nodes.run_rehearsal).
    begin() is called right before the first change to the copy (the runner's "go")."""
    db = config.stage_database(stage)
    report = {"release": rid, "stage": stage.name, "database": db.name, "source": stage.restore_from,
              "backup": backup, "engine": db.engine,
              "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "seconds": 0.0,
              "applied_before": [], "migrations": [], "notes": []}
    began = time.monotonic()
    mode = "rehearse-here" if reads_on_host(db) else "rehearse"
    argv = runner_argv(config.project.migrate_argv, mode)
    if argv is None:
        begin()
        run_migrations(t, layout, config, stage, rid)
        report["notes"].append("migrate_command is not Django's manage.py migrate: total time only")
    else:
        argv = runner_argv(config.project.migrate_argv, mode, ship_programs(t, layout))
        stream, progress = t.stream(app_command(layout, stage.name, rid, argv)), {}
        try:
            _run(stream, t, config, db, report, begin, progress)
            stream.finish()
        except CommandFailed as exc:
            raise _failed(stage, t, exc, progress, db) from None
        except BaseException:
            stream.kill()
            raise
    report["seconds"] = round(time.monotonic() - began, 3)
    return report


def _run(stream, t: Transport, config: Config, db: Database, report: dict, begin, progress: dict) -> None:
    """progress: "plan" once the runner's plan arrived, "running" the migration started and not done."""
    parser, chunks = MigrateOutput(), stream.chunks()

    def events():
        for arrival, chunk in chunks:
            for ev in parser.feed(chunk):
                yield arrival, ev
    it = events()
    plan = next((ev[1] for _, ev in it if ev[0] == "plan"), None)
    if plan is None:
        return  # the runner failed before its plan: finish() says why
    report["applied_before"] = plan["applied"]
    progress["plan"] = True
    done, spans = None, {}
    with contextlib.ExitStack() as stack:
        copy = CopyProbe(t, config, db)
        answer = copy.begin(stack, plan, report)
        begin()
        stream.write(answer + "\n")
        for arrival, ev in it:
            if ev[0] == "start":
                spans[ev[1]] = [arrival, None, None]
                progress["running"] = ev[1]
            elif ev[0] == "ok" and ev[1] in spans:
                spans[ev[1]][1:] = [arrival, ev[2]]
                progress["running"] = None
            elif ev[0] == "done":
                done = ev[1]
    copy.finish(report, [(n, s[0], s[1] or time.monotonic()) for n, s in spans.items()], done)
    for m in report["migrations"]:
        s = spans.get(m["name"])
        m["seconds"] = (s[2] if s[2] is not None else round(s[1] - s[0], 3)) if s and s[1] else None
