"""rehearsal: migrate:<stage> on a fresh copy of production, measured. One Python process on the stage's
first host (rehearsal_runner.py, through the app wrapper) reports the pending plan and each migration's
SQL, waits while the copy's schema and table sizes are read and the write probe starts (from this machine,
or for option_file on the host: rehearsal_copy.py), then runs Django's own migrate; its output is read as
it comes and each migration timed on arrival here. The report goes to .deploy/rehearsals/<release>.json
(+ .md) on that host.
"""
from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..config import Config, Database, Stage
from ..layout import Layout
from ..rehearsal import MigrateOutput, markdown
from ..transport import CommandFailed, Transport
from .common import StepError, json_or_none, last_line, read_text, write_file
from .environment import app_command
from .migrate import run_migrations
from .rehearsal_copy import CopyProbe, reads_on_host

# The runner's program: the probe's module first (its functions are the runner's globals), then the runner.
RUNNER = "\n".join(Path(__file__).with_name(f).read_text() for f in ("rehearsal_probe.py", "rehearsal_runner.py"))


def runner_argv(migrate_argv: Sequence[str], mode: str = "rehearse") -> list[str] | None:
    """python -c <runner> <mode> manage.py migrate [options]; None when migrate_command is not Django's."""
    argv = list(migrate_argv)
    idx = next((i for i, a in enumerate(argv) if a.endswith("manage.py")), None)
    if idx is None or argv[idx + 1:idx + 2] != ["migrate"]:
        return None
    python = argv[0] if idx > 0 else "python"
    return [python, "-c", RUNNER, mode, argv[idx], *argv[idx + 1:]]


def _failed(config: Config, stage: Stage, t: Transport, exc: CommandFailed) -> StepError:
    last = last_line(exc.stderr)
    return StepError(f"migrate:{stage.name}: {config.project.migrate_command!r} failed on {t.host} "
                     f"(exit {exc.retcode}): {last}")


def applied_migrations(t: Transport, layout: Layout, config: Config, stage: Stage, rid: str) -> list[str] | None:
    """The migrations applied to the stage's database (its django_migrations), read by the release's own
    Django; None for a non-Django migrate_command."""
    argv = runner_argv(config.project.migrate_argv, "applied")
    if argv is None:
        return None
    try:
        out = t.run(app_command(layout, stage.name, rid, argv))
    except CommandFailed as exc:
        raise _failed(config, stage, t, exc) from None
    plan = next((e[1] for e in MigrateOutput().feed(out) if e[0] == "plan"), None)
    if plan is None:
        raise StepError(f"migrate:{stage.name}: could not read the applied migrations on {t.host}")
    return plan["applied"]


def read_report(t: Transport, layout: Layout, rid: str) -> dict | None:
    return json_or_none(read_text(t, layout.rehearsal(rid)))


def mark_stale(t: Transport, layout: Layout, rid: str) -> None:
    """A stale report is kept (renamed), so that the next deploy rehearses again on a fresh copy."""
    t.call(["mv", "-f", "--", layout.rehearsal(rid), layout.rehearsal(rid, stale=True)])


def write_report(t: Transport, layout: Layout, report: dict) -> None:
    rid = report["release"]
    t.run(["mkdir", "-p", "-m", "755", layout.rehearsals])
    write_file(t, layout.rehearsal_md(rid), markdown(report).encode(), "644")
    write_file(t, layout.rehearsal(rid), json.dumps(report, indent=1).encode() + b"\n", "644")


def rehearse(t: Transport, layout: Layout, config: Config, stage: Stage, rid: str, backup: str | None) -> dict:
    db = config.stage_database(stage)
    report = {"release": rid, "stage": stage.name, "database": db.name, "source": stage.restore_from,
              "backup": backup, "engine": db.engine,
              "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "seconds": 0.0,
              "applied_before": [], "migrations": [], "notes": []}
    began = time.monotonic()
    argv = runner_argv(config.project.migrate_argv, "rehearse-here" if reads_on_host(db) else "rehearse")
    if argv is None:
        run_migrations(t, layout, config, stage, rid)
        report["notes"].append("migrate_command is not Django's manage.py migrate: total time only")
    else:
        stream = t.stream(app_command(layout, stage.name, rid, argv))
        try:
            _run(stream, t, config, db, report)
            stream.finish()
        except CommandFailed as exc:
            raise _failed(config, stage, t, exc) from None
        except BaseException:
            stream.kill()
            raise
    report["seconds"] = round(time.monotonic() - began, 3)
    write_report(t, layout, report)
    return report


def _run(stream, t: Transport, config: Config, db: Database, report: dict) -> None:
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
    done, spans = None, {}
    with contextlib.ExitStack() as stack:
        copy = CopyProbe(t, config, db)
        stream.write(copy.begin(stack, plan, report) + "\n")
        for arrival, ev in it:
            if ev[0] == "start":
                spans[ev[1]] = [arrival, None, None]
            elif ev[0] == "ok" and ev[1] in spans:
                spans[ev[1]][1:] = [arrival, ev[2]]
            elif ev[0] == "done":
                done = ev[1]
    copy.finish(report, [(n, s[0], s[1] or time.monotonic()) for n, s in spans.items()], done)
    for m in report["migrations"]:
        s = spans.get(m["name"])
        m["seconds"] = (s[2] if s[2] is not None else round(s[1] - s[0], 3)) if s and s[1] else None
