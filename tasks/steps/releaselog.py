"""The release log: .deploy/releases.jsonl on every host of a stage, append-only, one JSON line a switch.

result is one of: ok (a switch done), failed (a switch undone after a failed reload or health check),
rollback (a switch back to an earlier release), bad (a release rolled away from: rollback skips it).
"""
from __future__ import annotations

import json

from ..layout import Layout
from ..runtime.common import append_line, read_text, stamp
from ..transport import Transport


def make_record(stage: str, release: str, revision: str, previous: str | None, result: str,
                backups: list[str] | None = None, **extra) -> dict:
    now = stamp()
    return {"stage": stage, "release": release, "revision": revision, "previous": previous,
            "user": now["user"], "deployer": now["machine"], "time": now["time"], "result": result,
            "backups": backups or [], **extra}


def append_record(t: Transport, layout: Layout, record: dict) -> None:
    append_line(t, layout.log, record)


def parse_log(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line of a killed writer is skipped, not fatal
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_log(t: Transport, layout: Layout) -> list[dict]:
    return parse_log(read_text(t, layout.log) or "")


def good_releases(records: list[dict], stage: str) -> list[str]:
    """The releases this stage ran successfully, oldest first by their latest switch; a release whose latest
    verdict is bad is left out (and a bad release promoted again is good again)."""
    latest: dict[str, str] = {}
    order: list[str] = []
    for rec in records:
        rid, result = rec.get("release"), rec.get("result")
        if rec.get("stage") == stage and rid and result in ("ok", "rollback", "bad"):
            latest[rid] = result
            if result != "bad":
                order = [r for r in order if r != rid] + [rid]
    return [r for r in order if latest[r] != "bad"]


def rollback_target(records: list[dict], stage: str, current: str | None) -> str | None:
    """The newest release this stage ran successfully before `current`, skipping releases marked bad."""
    return next((r for r in reversed(good_releases(records, stage)) if r != current), None)


def last_switch(records: list[dict], stage: str, release: str | None) -> dict | None:
    """The log record that put `release` live on this stage."""
    for rec in reversed(records):
        if rec.get("stage") == stage and rec.get("release") == release and rec.get("result") in ("ok", "rollback"):
            return rec
    return None
