"""The rehearsal's view of the copy before its migrations run: the report's static part (SQL, tables and
their sizes, unsafe operations) and the write probe, read where the database's password is.

- password_env: from this machine, with the engine's driver (mysql-connector-python, psycopg 3) through an
  SSH tunnel over the run's own connection (the engine's copy_connector and probe); the probe's writes and
  the migrations' spans are both on this machine's clock.
- option_file (MySQL), passfile (PostgreSQL): on the host, inside the runner, through new sessions of the
  app's own connection (its driver, and the password the app or libpq reads from that file there): this
  machine never reads the file.
  The schema comes with the runner's plan; sizes, probe writes and the migrations' spans come back in its
  last line, as data, all on the host's clock.
- sqlite: no probe (one writer at a time); sizes from the runner's plan.

A migration whose SQL the runner could not collect before migrating ("sql": null in its plan: it changes a
table an earlier pending migration creates, and MySQL's schema editor reads the live database) is probed on
the tables its operations name, and judged at the end on the SQL migrate executed (the runner's last line).
"""
from __future__ import annotations

import json

from ...config import Config, Database
from ...engines import engine_for
from ...engines.base import Engine
from ...errors import StepError
from ...transport import Transport
from .rehearsal_report import attribute_stalls

INTERVAL = 0.05


def reads_on_host(db: Database) -> bool:
    """A database whose password this machine does not have (option_file, passfile): read it on the host."""
    return engine_for(db).reads_copy_on_host(db)


class CopyProbe:
    """begin() before the runner's "go" (returns the line to answer it with); finish() after its "done"."""

    def __init__(self, t: Transport, config: Config, db: Database):
        self.t, self.config, self.db = t, config, db
        self.engine: Engine = engine_for(db)
        self.probe = None                  # the probe run from here (the engine's probe.Probe)
        self.on_host = False               # the probe run by the runner
        self.plan: dict = {"migrations": []}
        self.before: dict = {}             # the copy's schema before the migrations, as _judge takes it
        self.sizes: dict = {}              # table sizes read from here before the migrations

    def begin(self, stack, plan: dict, report: dict) -> str:
        self.plan = plan
        if not plan["migrations"]:
            return "go"
        unprobed = self.engine.copy_without_probe(plan)
        if unprobed is not None:
            note, self.before, self.sizes = unprobed
            report["notes"].append(note)
            _judge(self.engine, plan, self.before, report)
            _fill_sizes(report, self.sizes)
            return "go"
        scan = self.engine.plan_check({})
        touched = {n for m in plan["migrations"] for n in scan.check(m["sql"] or [])["tables"] + _named(m)}
        if not touched & set(plan.get("tables") or []):
            report["notes"].append("every table the migrations touch is created by them: nothing to probe")
            _judge(self.engine, plan, {}, report)
            _fill_sizes(report, {})
            return "go"
        timeout = int(2 * self.config.project.max_write_stall + 5)
        report["probe"] = {"tables": [], "interval": INTERVAL, "timeout": timeout}
        if reads_on_host(self.db):
            return self._begin_on_host(plan, report, timeout)
        return self._begin_here(stack, plan, report, timeout)

    def _begin_on_host(self, plan: dict, report: dict, timeout: int) -> str:
        self.before = self.engine.copy_columns(plan.get("columns") or [])
        probed = _judge(self.engine, plan, self.before, report)
        self.on_host = True
        report["probe"]["runs_on"] = "host"
        report["notes"].append(f"{self.engine.host_password_key}: sizes read and writes probed on {self.t.host} "
                               "through the app's own connection (the password stays there)")
        return "probe " + json.dumps({"tables": probed, "interval": INTERVAL, "timeout": timeout})

    def _begin_here(self, stack, plan: dict, report: dict, timeout: int) -> str:
        host, port = stack.enter_context(self.t.tunnel(self.db.host, self.db.port))
        connect, probe = self.engine.copy_connector(self.db, host, port), self.engine.probe
        try:
            con = connect()
        except Exception as exc:
            denied = self.engine.access_denied(self.db, str(exc))
            if denied:
                raise StepError(f"migrate:{report['stage']}: the rehearsal's probe: {denied}") from None
            raise StepError(f"migrate:{report['stage']}: cannot reach database {self.db.name} ({self.db.host}:"
                            f"{self.db.port} as {self.t.host} sees it) for the rehearsal's probe: {exc}") from None
        stack.callback(con.close)
        self.before = self.engine.copy_columns(probe.read_schema(con))
        probed = _judge(self.engine, plan, self.before, report)
        self.sizes = probe.table_sizes(con, probed)
        _fill_sizes(report, self.sizes)
        targets = probe.probe_targets(con, probed)
        self.probe = probe.Probe(connect, targets, INTERVAL, report["probe"]["timeout"])
        report["probe"].update(tables=[x[0] for x in targets], runs_on="deployer")
        self.probe.start()
        stack.callback(lambda: report["probe"].update(writes=len(self.probe.writes), errors=self.probe.errors[:5]))
        stack.callback(self.probe.stop)
        return "go"

    def finish(self, report: dict, spans: list[tuple[str, float, float]], done: dict | None) -> None:
        """Each migration's max_write_stall: spans are the migrations' (name, start, end) as their lines
        arrived here; done is the runner's last event (its own probe's data, for option_file)."""
        self._judge_executed(report, done)
        if self.probe is not None:
            stalls = attribute_stalls(spans, self.probe.writes)
        elif self.on_host and (done or {}).get("probe"):
            stalls = self._from_host(report, done["probe"])
        else:
            return
        for m in report["migrations"]:
            m["max_write_stall"] = stalls.get(m["name"])

    def _judge_executed(self, report: dict, done: dict | None) -> None:
        """The migrations judged again, each one whose SQL the runner could not collect beforehand on the
        SQL that migrate executed (done["executed"]); the others as before."""
        unread = [m for m in self.plan["migrations"] if m.get("sql") is None]
        if not unread:
            return
        executed = (done or {}).get("executed") or {}
        plan = {"migrations": [m if m.get("sql") is not None else dict(m, sql=executed.get(m["name"]))
                               for m in self.plan["migrations"]]}
        report["migrations"] = []
        _judge(self.engine, plan, self.before, report)
        _fill_sizes(report, self.sizes, set(self.plan.get("tables") or []))
        for m in unread:
            shown = ("the SQL shown is what migrate executed" if executed.get(m["name"]) is not None
                     else "its SQL is unknown")
            report["notes"].append(f"{m['name']}: its SQL could not be collected before the pending migrations "
                                   f"ahead of it ran ({m.get('sql_error')}); {shown}")

    def _from_host(self, report: dict, data: dict) -> dict:
        _fill_sizes(report, data["sizes"], set(self.plan.get("tables") or []))
        report["probe"].update(tables=data["tables"], writes=len(data["writes"]), errors=data["errors"])
        spans = [(name, start, end if end is not None else data["end"]) for name, start, end in data["spans"]]
        return attribute_stalls(spans, [tuple(w) for w in data["writes"]])


def _fill_sizes(report: dict, sizes: dict, existing: set[str] = frozenset()) -> None:
    """Each table entry gets its size on the copy; a table without one is created by the plan, unless it is
    one of the copy's `existing` tables (one the probe did not read: its size stays unknown)."""
    for m in report["migrations"]:
        for tbl in m["tables"]:
            size = sizes.get(tbl["name"])
            if size or tbl["name"] not in existing:
                tbl.update(size if size else {"rows": 0, "mb": 0.0, "created": True})


def _named(m: dict) -> list[str]:
    """Tables a migration touches that its SQL does not show: RunPython's, and for one whose SQL was not
    collected, those its operations name."""
    return m.get("python_tables", []) + m.get("operation_tables", [])


def _judge(engine: Engine, plan: dict, before: dict, report: dict) -> list[str]:
    """Each migration's entry (SQL, tables, unsafe operations); returns the existing tables touched."""
    check, probed = engine.plan_check(before), []
    for m in plan["migrations"]:
        found = check.check(m["sql"] or [])
        extra = m.get("python_tables", []) if m["sql"] is not None else _named(m)
        names = found["tables"] + [x for x in dict.fromkeys(extra) if x not in found["tables"]]
        report["migrations"].append({"name": m["name"], "seconds": None,
                                     "sql": [s for s in m["sql"] or [] if not s.lstrip().startswith("--")],
                                     "tables": [{"name": n} for n in names], "max_write_stall": None,
                                     "unsafe": found["unsafe"]})
        probed += [n for n in names if n in before and n not in probed]
    return probed

