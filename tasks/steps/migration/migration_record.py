"""The record of a migration of a database that is not a throwaway copy: .deploy/migration-<stage>.json on
the database's backup host (layout.migration), one JSON object, the stage's latest migration.

    {"stage": "staging", "release": "<id>", "database": "prod", "token": "<run that began it>",
     "runs": ["<token>", ...], "started": "<UTC ISO>", "epoch": 1.0,
     "before": {"name", "file", "epoch", "sha256"} | null,     the verified backup taken before the FIRST attempt
     "after": {...} | null, "outcome": null | "migrated" | "restored" | "abandoned", "finished": "<UTC ISO>",
     "restoring": "<UTC ISO>"}     only after a failed migration: when its restore from "before" began

It is written as an intent (outcome null) before the first change, gets its "before" backup once that is
verified and before the migration starts, and its outcome only after the verified "after" backup: the
migration's last effect. An intent without an outcome is unfinished work for the next run.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from ...layout import Layout
from ...runtime.common import json_or_none, read_text, write_file
from ...transport import Transport

OUTCOMES = ("migrated", "restored", "abandoned")


def now() -> tuple[str, float]:
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ"), t.timestamp()


def new_intent(stage: str, release: str, database: str, token: str) -> dict:
    started, epoch = now()
    return {"stage": stage, "release": release, "database": database, "token": token, "runs": [token],
            "started": started, "epoch": epoch, "before": None, "after": None, "outcome": None}


def backup_ref(meta: dict) -> dict:
    """What the record keeps of a backup's metadata: enough to find it again and know it is the same."""
    return {k: meta[k] for k in ("name", "file", "epoch", "sha256") if k in meta}


def parse_record(text: str | None) -> dict | None:
    """Never written half (write_file renames into place): a damaged file is no record."""
    rec = json_or_none(text)
    return rec if isinstance(rec, dict) and rec.get("release") and rec.get("stage") else None


def read_record(t: Transport, layout: Layout, stage: str) -> dict | None:
    return parse_record(read_text(t, layout.migration(stage)))


def write_record(t: Transport, layout: Layout, record: dict) -> None:
    write_file(t, layout.migration(record["stage"]), json.dumps(record, sort_keys=True).encode(), "644")


def is_open(record: dict | None) -> bool:
    """An intent without an outcome: a run began this migration and did not record its end."""
    return bool(record) and record.get("outcome") not in OUTCOMES


def adoptable(metas: list[dict], reason: str, since: float) -> dict | None:
    """Pure: the newest verified backup taken for this intent (its reason, at or after the intent began)
    that the run which took it died before recording. Runs of a stage never overlap (the lock), so a
    "before" backup from that window shows the database untouched, and an "after" one a finished migration."""
    mine = [m for m in metas if m.get("reason") == reason and m.get("epoch", 0) >= since]
    return mine[-1] if mine else None


def pair(record: dict | None, release: str) -> list[str] | None:
    """Pure: the before/after backup files of this release's migration, if the record is of it; [] when it
    is of it but ended without both; None when the record says nothing about this release."""
    if not record or record.get("release") != release:
        return None
    if record.get("outcome") == "migrated" and record.get("before") and record.get("after"):
        return [record["before"]["file"], record["after"]["file"]]
    return []
