"""rehearsal: migrate:<stage> on a fresh copy of production, measured. One Python process on the stage's
first host (rehearsal_runner.py, through the app wrapper) reports the pending plan and each migration's
SQL, waits while this machine reads the copy's schema and table sizes and starts its write probe, then
runs Django's own migrate; its output is read as it comes and each migration timed on arrival here.
The report goes to .deploy/rehearsals/<release>.json (+ .md) on that host.
"""
from __future__ import annotations

import contextlib
import json
import shlex
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import livedb
from ..config import Config, Database, Stage
from ..layout import Layout
from ..rehearsal import MigrateOutput, attribute_stalls, markdown
from ..sqlcheck import PlanCheck
from ..sqltext import columns_from_mysql, columns_from_sqlite
from ..transport import CommandFailed, Transport
from .common import StepError, json_or_none, last_line, read_text, write_file
from .environment import app_command
from .migrate import run_migrations

RUNNER = (Path(__file__).with_name("rehearsal_runner.py")).read_text()
INTERVAL = 0.05


def runner_argv(migrate_command: str, mode: str = "rehearse") -> list[str] | None:
    """python -c <runner> <mode> manage.py migrate [options]; None when migrate_command is not Django's."""
    argv = shlex.split(migrate_command)
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
    argv = runner_argv(config.project.migrate_command, "applied")
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
    argv = runner_argv(config.project.migrate_command)
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
    with contextlib.ExitStack() as stack:
        probe = _prepare(stack, t, config, db, plan, report)
        stream.write("go\n")
        spans: dict[str, list] = {}
        for arrival, ev in it:
            if ev[0] == "start":
                spans[ev[1]] = [arrival, None, None]
            elif ev[0] == "ok" and ev[1] in spans:
                spans[ev[1]][1:] = [arrival, ev[2]]
        if probe:
            probe.stop()
    ordered = [(n, s[0], s[1] or time.monotonic()) for n, s in spans.items()]
    stalls = attribute_stalls(ordered, probe.writes) if probe else {}
    for m in report["migrations"]:
        s = spans.get(m["name"])
        m["seconds"] = (s[2] if s[2] is not None else round(s[1] - s[0], 3)) if s and s[1] else None
        m["max_write_stall"] = stalls.get(m["name"]) if probe else None


def _prepare(stack, t: Transport, config: Config, db: Database, plan: dict, report: dict):
    """The report's static part (SQL, tables and their sizes, unsafe operations) and, for MySQL, the
    running write probe; for sqlite, no probe (one writer at a time: nothing to measure)."""
    if not plan["migrations"]:
        return None
    connect, con, before = _open_copy(stack, t, db, plan, report)
    probed = _judge(plan, before, report)
    sizes = livedb.table_sizes(con, probed) if con else _sqlite_sizes(plan)
    for m in report["migrations"]:
        for tbl in m["tables"]:
            size = sizes.get(tbl["name"])
            tbl.update(size if size else {"rows": 0, "mb": 0.0, "created": True})
    if con is None:
        return None
    targets = livedb.probe_targets(con, probed)
    timeout = int(2 * config.project.max_write_stall + 5)
    probe = livedb.Probe(connect, targets, INTERVAL, timeout)
    report["probe"] = {"tables": [x[0] for x in targets], "interval": INTERVAL, "timeout": timeout}
    probe.start()
    stack.callback(lambda: report["probe"].update(writes=len(probe.writes), errors=probe.errors[:5]))
    stack.callback(probe.stop)
    return probe


def _open_copy(stack, t: Transport, db: Database, plan: dict, report: dict):
    """(connect, connection, schema before) of the copy: MySQL through the tunnel when a table the plan
    touches exists already; otherwise no connection at all."""
    if db.engine == "sqlite":
        report["notes"].append("sqlite: no write probe (one writer at a time); max_write_stall is null")
        return None, None, columns_from_sqlite({k: v["sql"] for k, v in (plan.get("sqlite") or {}).items()})
    scan = PlanCheck({})
    touched = {n for m in plan["migrations"] for n in scan.check(m["sql"])["tables"] + m.get("python_tables", [])}
    if not touched & set(plan.get("tables") or []):
        report["notes"].append("every table the migrations touch is created by them: nothing to probe")
        return None, None, {}
    host, port = stack.enter_context(t.tunnel(db.host, db.port))
    user, password = livedb.credentials(t, db)

    def connect():
        return livedb.connect(host, port, db, user, password)
    try:
        con = connect()
    except Exception as exc:
        raise StepError(f"migrate:{report['stage']}: cannot reach database {db.name} ({db.host}:{db.port} "
                        f"as {t.host} sees it) for the rehearsal's probe: {exc}") from None
    stack.callback(con.close)
    return connect, con, columns_from_mysql(livedb.read_schema(con))


def _judge(plan: dict, before: dict, report: dict) -> list[str]:
    """Each migration's entry (SQL, tables, unsafe operations); returns the existing tables touched."""
    check, probed = PlanCheck(before), []
    for m in plan["migrations"]:
        found = check.check(m["sql"])
        names = found["tables"] + [x for x in m.get("python_tables", []) if x not in found["tables"]]
        report["migrations"].append({"name": m["name"], "seconds": None,
                                     "sql": [s for s in m["sql"] if not s.lstrip().startswith("--")],
                                     "tables": [{"name": n} for n in names], "max_write_stall": None,
                                     "unsafe": found["unsafe"]})
        probed += [n for n in names if n in before and n not in probed]
    return probed


def _sqlite_sizes(plan: dict) -> dict:
    out = {}
    for name, info in (plan.get("sqlite") or {}).items():
        size = info.get("bytes")
        out[name] = {"rows": info["rows"], "rows_exact": True,
                     "mb": round(size / 1048576, 2) if size is not None else None}
    return out
