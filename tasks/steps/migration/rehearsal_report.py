"""The migration rehearsal's pure parts: the runner's output (its plan line and Django's `migrate -v 2`
text) as events, write-stall attribution, the report's text forms, and the guard's decision."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

MARK = "@@doit-stages "
ANSI = re.compile(r"\x1b\[[0-9;]*m")
APPLYING = re.compile(r"  Applying (\S+?)\.\.\.")
OK = re.compile(r"\A OK(?: \((\d+(?:\.\d+)?)s\))?\n")


class MigrateOutput:
    """Fed the runner's stdout in chunks as they arrive; yields events at once, without waiting for a line
    end: Django writes '  Applying app.0002_x...' when a migration starts and ' OK (1.234s)' when it is
    done. Events: ("plan", dict), ("start", name), ("ok", name, seconds or None), ("done", dict)."""

    def __init__(self):
        self.buf = ""
        self.current: str | None = None
        self.text: list[str] = []

    def feed(self, chunk: str) -> list[tuple]:
        self.buf += ANSI.sub("", chunk)
        events = []
        while True:
            ev = self._next()
            if ev is None:
                return events
            events.append(ev)

    def _next(self):
        if self.current is not None:
            m = OK.match(self.buf)
            if m:
                name, self.current = self.current, None
                self.buf = self.buf[m.end():]
                return ("ok", name, float(m.group(1)) if m.group(1) else None)
        m = APPLYING.match(self.buf)
        if m:
            self.current = m.group(1)
            self.buf = self.buf[m.end():]
            return ("start", self.current)
        line, nl, rest = self.buf.partition("\n")
        if not nl:
            return None  # wait for the rest of the line
        self.buf = rest
        if line.startswith(MARK):
            event = json.loads(line[len(MARK):])
            return ("plan", event) if event.get("event") == "plan" else ("done", event)
        self.text.append(line)
        return self._next()


def parse_migrate_output(text: str) -> list[tuple]:
    """All events of a complete output (the same parser, fed at once)."""
    return MigrateOutput().feed(text)


def attribute_stalls(spans: list[tuple[str, float, float]], writes: list[tuple[float, float]]) -> dict:
    """The longest write wait per migration. spans: (name, start, end) on the deploying machine's clock,
    in plan order; writes: (sent, answered) of each probe write, same clock. A write belongs to the
    migration that had started last when it was answered (a blocked write is released when the blocking
    DDL ends, inside that migration), if it was in flight while that migration ran. A migration no write
    overlapped, with writes before and after it, is bounded by its own length."""
    worst: dict[str, float | None] = {name: None for name, _, _ in spans}
    for sent, answered in writes:
        owner = None
        for name, start, end in spans:
            if start <= answered:
                owner = (name, start, end)
        if owner is None or sent > owner[2]:
            continue
        name = owner[0]
        worst[name] = max(worst[name] or 0.0, answered - sent)
    for name, start, end in spans:
        # A migration shorter than the probe's interval may have no write in flight while it ran. If the
        # probe was writing before it and after it, no write can have waited longer than the migration
        # itself ran: report that bound rather than nothing.
        if worst[name] is None and any(a <= start for _, a in writes) and any(s >= end for s, _ in writes):
            worst[name] = max(end - start, 0.0)
    return {k: (round(v, 3) if v is not None else None) for k, v in worst.items()}


# -- the report's text forms ------------------------------------------------------------------------
def _stall(v) -> str:
    return "-" if v is None else f"{v:.2f}s"


def _tables(m: dict) -> str:
    parts = []
    for t in m.get("tables", []):
        if t.get("created"):
            parts.append(f"{t['name']} (new)")
        elif t.get("rows") is None:
            parts.append(t["name"])
        else:
            approx = "" if t.get("rows_exact", True) else "~"
            mb = f", {t['mb']:.1f} MB" if t.get("mb") is not None else ""
            parts.append(f"{t['name']} ({approx}{t['rows']} rows{mb})")
    return ", ".join(parts) or "-"


def _unsafe(m: dict) -> str:
    return "; ".join(f"{u['kind']} {u['table']}" + (f".{u['column']}" if u.get("column") else "")
                     for u in m.get("unsafe", [])) or "-"


def rows(report: dict) -> list[list[str]]:
    return [[m["name"], f"{m['seconds']:.2f}s" if m.get("seconds") is not None else "-",
             _stall(m.get("max_write_stall")), _tables(m), _unsafe(m)] for m in report.get("migrations", [])]


HEAD = ["migration", "time", "write stall", "tables (on the copy)", "unsafe"]


def text_table(report: dict) -> str:
    body = rows(report)
    if not body:
        return f"rehearsal of {report['release']}: no migration pending ({report.get('seconds', 0):.2f}s)"
    widths = [max(len(r[i]) for r in [HEAD, *body]) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [HEAD, *body]]
    notes = [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join([f"rehearsal of {report['release']} on a copy of {report.get('source', 'production')} "
                      f"({report.get('backup')}), {report.get('seconds', 0):.2f}s:", *lines, *notes])


def markdown(report: dict) -> str:
    out = [f"### Migration rehearsal of `{report['release']}`", "",
           f"Stage `{report['stage']}`, database `{report['database']}` restored from `{report.get('backup')}`, "
           f"started {report.get('started')}, {report.get('seconds', 0):.2f} s in all.", ""]
    body = rows(report)
    if body:
        out += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    else:
        out.append("No migration pending.")
    for m in report.get("migrations", []):
        for u in m.get("unsafe", []):
            out.append(f"- **{u['kind']}** in `{m['name']}` on `{u['table']}`"
                       + (f".`{u['column']}`" if u.get("column") else "") + f": {u['why']}")
    out += [f"- {n}" for n in report.get("notes", [])]
    return "\n".join(out) + "\n"


# -- the guard --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Witness:
    """A place that recorded the sha256 of a rehearsal's report when the rehearsal wrote it: `label` names
    it, `record` is what it holds (None: nothing), `ignored` says why it does not count (empty: it counts)."""
    label: str
    record: dict | None
    ignored: str = ""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_of(report: dict, data: bytes, host: str, by: str) -> dict:
    """What a witness keeps of a report it saw written: its sha256 and what the report says it is."""
    return {"release": report["release"], "sha256": digest(data), "stage": report.get("stage"),
            "database": report.get("database"), "source": report.get("source"), "backup": report.get("backup"),
            "started": report.get("started"), "host": host, "by": by}


def _says(w: Witness) -> str:
    if w.ignored:
        return f"{w.label}: not counted ({w.ignored})"
    if not isinstance(w.record, dict):
        return f"{w.label}: no record"
    return (f"{w.label}: sha256 {str(w.record.get('sha256'))[:12]} (rehearsed {w.record.get('started', '?')} by "
            f"{w.record.get('by', '?')})")


def untrusted(data: bytes, witnesses: list[Witness]) -> str | None:
    """Why a report cannot be taken for the one its rehearsal wrote, or None: some counted witness recorded
    exactly its sha256. A witness that recorded another one shows the report was changed or replaced; none
    at all, that nothing this run can trust saw the rehearsal."""
    sha = digest(data)
    counted = [w for w in witnesses if not w.ignored]
    if any(isinstance(w.record, dict) and w.record.get("sha256") == sha for w in counted):
        return None
    changed = any(isinstance(w.record, dict) for w in counted)
    what = ("the report differs from the one its rehearsal wrote (changed or replaced since)" if changed
            else "nothing this run can trust recorded that rehearsal (a report counts when this machine ran its "
                 "rehearsal, or when the copied database's backup host, outside the rehearsing stage, recorded it)")
    return f"{what}: its sha256 is {sha[:12]}; {'; '.join(_says(w) for w in witnesses)}"


def other_rehearsal(report: dict, rid: str, source: str) -> str | None:
    """Why a report is not a rehearsal of this release on a copy of this database, or None."""
    if report.get("release") != rid:
        return f"the report is of release {report.get('release')!r}, not of {rid}"
    if report.get("source") not in (None, source):
        return f"the report rehearses a copy of database {report.get('source')!r}, not of {source}"
    return None


def stale(report: dict, rid: str, applied_now: list[str] | None, pending_now: list[str] | None) -> str | None:
    """Why a report is not the rehearsal of what production's migration would do now, or None: it must have
    started from production's applied migrations as they are, and list exactly the migrations pending on
    production, in order. Nothing to compare for a non-Django migrate_command (applied_now None)."""
    if applied_now is None:
        return None
    raw = report.get("applied_before")
    before = [str(x) for x in raw] if isinstance(raw, list) else None
    if before is None or sorted(applied_now) != sorted(before):
        before = before or []
        extra = sorted(set(applied_now) - set(before))
        missing = sorted(set(before) - set(applied_now))
        detail = ", ".join([f"+{x}" for x in extra] + [f"-{x}" for x in missing]) or "no applied_before"
        return (f"the rehearsal of {rid} is stale: production's applied migrations changed since the copy it "
                f"ran on ({detail})")
    names = [m.get("name") for m in report.get("migrations") or [] if isinstance(m, dict)]
    if pending_now is not None and names != pending_now:
        return (f"the rehearsal of {rid} is stale: its migrations ({', '.join(map(str, names)) or 'none'}) are "
                f"not exactly those pending on production ({', '.join(pending_now) or 'none'})")
    return None


def refusal(report: dict | None, rid: str, applied_now: list[str] | None, max_stall: float,
            allow: str, pending_now: list[str] | None = None) -> str | None:
    """Why production must not be migrated with this release, or None. (a) no report and (b) a stale one
    (or one not of this release, or not listing exactly what is pending) cannot be overridden;
    DEPLOY_ALLOW_UNSAFE=<rid> accepts (c) unsafe operations and (d) stalls over max_write_stall."""
    if report is None:
        return f"release {rid} has no migration rehearsal"
    problem = other_rehearsal(report, rid, report.get("source")) or stale(report, rid, applied_now, pending_now)
    if problem:
        return problem
    if allow == rid:
        return None
    for m in report.get("migrations", []):
        for u in m.get("unsafe", []):
            col = f".{u['column']}" if u.get("column") else ""
            return f"{m['name']} is unsafe: {u['kind']} on {u['table']}{col} ({u['why']})"
        stall = m.get("max_write_stall")
        if stall is not None and stall > max_stall:
            return (f"{m['name']} blocked writes for {stall:.2f}s on the copy, over max_write_stall = "
                    f"{max_stall:g}s")
    return None
