"""The rehearsal's view of the copy before its migrations run: the report's static part (SQL, tables and
their sizes, unsafe operations) and the write probe, read where the database's password is.

- password_env: from this machine, with mysql-connector-python through an SSH tunnel over the run's own
  connection (livedb); the probe's writes and the migrations' spans are both on this machine's clock.
- option_file: on the host, inside the runner, through new sessions of the app's own connection (its
  driver, and the password the app reads from the option file there): this machine never reads the file.
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
from ...errors import StepError
from ...hostside.rehearsal_probe import Probe, probe_targets, read_schema, table_sizes
from ...transport import Transport
from ..database import livedb
from ..database.db import access_denied
from .rehearsal_report import attribute_stalls
from .sqlcheck import PlanCheck
from .sqltext import columns_from_mysql, columns_from_sqlite

INTERVAL = 0.05


def reads_on_host(db: Database) -> bool:
    """A MySQL database whose password this machine does not have (option_file): read it on the host."""
    return db.engine == "mysql" and not db.password_env


class CopyProbe:
    """begin() before the runner's "go" (returns the line to answer it with); finish() after its "done"."""

    def __init__(self, t: Transport, config: Config, db: Database):
        self.t, self.config, self.db = t, config, db
        self.probe: Probe | None = None   # the probe run from here
        self.on_host = False               # the probe run by the runner
        self.plan: dict = {"migrations": []}
        self.before: dict = {}             # the copy's schema before the migrations, as _judge takes it
        self.sizes: dict = {}              # table sizes read from here before the migrations

    def begin(self, stack, plan: dict, report: dict) -> str:
        self.plan = plan
        if not plan["migrations"]:
            return "go"
        if self.db.engine == "sqlite":
            report["notes"].append("sqlite: no write probe (one writer at a time); max_write_stall is null")
            creates = {k: v["sql"] for k, v in (plan.get("sqlite") or {}).items()}
            self.before, self.sizes = columns_from_sqlite(creates), _sqlite_sizes(plan)
            _judge(plan, self.before, report)
            _fill_sizes(report, self.sizes)
            return "go"
        scan = PlanCheck({})
        touched = {n for m in plan["migrations"] for n in scan.check(m["sql"] or [])["tables"] + _named(m)}
        if not touched & set(plan.get("tables") or []):
            report["notes"].append("every table the migrations touch is created by them: nothing to probe")
            _judge(plan, {}, report)
            _fill_sizes(report, {})
            return "go"
        timeout = int(2 * self.config.project.max_write_stall + 5)
        report["probe"] = {"tables": [], "interval": INTERVAL, "timeout": timeout}
        if reads_on_host(self.db):
            return self._begin_on_host(plan, report, timeout)
        return self._begin_here(stack, plan, report, timeout)

    def _begin_on_host(self, plan: dict, report: dict, timeout: int) -> str:
        self.before = columns_from_mysql(plan.get("columns") or [])
        probed = _judge(plan, self.before, report)
        self.on_host = True
        report["probe"]["runs_on"] = "host"
        report["notes"].append(f"option_file: sizes read and writes probed on {self.t.host} through the app's "
                               "own connection (the password stays there)")
        return "probe " + json.dumps({"tables": probed, "interval": INTERVAL, "timeout": timeout})

    def _begin_here(self, stack, plan: dict, report: dict, timeout: int) -> str:
        host, port = stack.enter_context(self.t.tunnel(self.db.host, self.db.port))
        user, password = livedb.credentials(self.db)

        def connect():
            return livedb.connect(host, port, self.db, user, password)
        try:
            con = connect()
        except Exception as exc:
            denied = access_denied(self.db, str(exc))
            if denied:
                raise StepError(f"migrate:{report['stage']}: the rehearsal's probe: {denied}") from None
            raise StepError(f"migrate:{report['stage']}: cannot reach database {self.db.name} ({self.db.host}:"
                            f"{self.db.port} as {self.t.host} sees it) for the rehearsal's probe: {exc}") from None
        stack.callback(con.close)
        self.before = columns_from_mysql(read_schema(con))
        probed = _judge(plan, self.before, report)
        self.sizes = table_sizes(con, probed)
        _fill_sizes(report, self.sizes)
        targets = probe_targets(con, probed)
        self.probe = Probe(connect, targets, INTERVAL, report["probe"]["timeout"])
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
        _judge(plan, self.before, report)
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


def _judge(plan: dict, before: dict, report: dict) -> list[str]:
    """Each migration's entry (SQL, tables, unsafe operations); returns the existing tables touched."""
    check, probed = PlanCheck(before), []
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


def _sqlite_sizes(plan: dict) -> dict:
    out = {}
    for name, info in (plan.get("sqlite") or {}).items():
        size = info.get("bytes")
        out[name] = {"rows": info["rows"], "rows_exact": True,
                     "mb": round(size / 1048576, 2) if size is not None else None}
    return out
