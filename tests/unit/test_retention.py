"""Retention's choice (steps/database/retention.py): which backups go, on plain metadata."""
from __future__ import annotations

from doit_stages.steps.database.retention import backups_to_remove


def test_retention_keeps_migration_pairs_apart_from_refreshes():
    metas = [meta(1, "before migrate:staging r1"), meta(2, "after migrate:staging r1")]
    metas += [meta(n) for n in range(3, 20)]                 # 17 refreshes by deploy:test
    metas += [meta(20, "before migrate:staging r2"), meta(21, "after migrate:staging r2")]
    metas += [meta(n, "for the rehearsal of r3") for n in range(22, 30)]
    gone = {m["name"] for m in backups_to_remove(metas, keep=10, keep_migrations=2)}
    kept = {m["name"] for m in metas} - gone
    assert {"b001", "b002", "b020", "b021"} <= kept
    routine = sorted(k for k in kept if k not in {"b001", "b002", "b020", "b021"})
    assert routine == ["b018", "b019"] + [f"b{n:03d}" for n in range(22, 30)]     # the newest 10 of the rest


def test_retention_drops_pairs_of_older_migrations_and_keeps_the_newest():
    metas = []
    for i in range(1, 5):
        metas += [meta(10 * i, f"before migrate:staging r{i}"), meta(10 * i + 1, f"after migrate:staging r{i}")]
    metas.append(meta(45, "before migrate:staging r5"))        # a failed migration: only its "before"
    gone = [m["name"] for m in backups_to_remove(metas, keep=1, keep_migrations=3)]
    assert gone == ["b010", "b011", "b020", "b021"]
    assert backups_to_remove([meta(1)], keep=0, keep_migrations=0) == []   # the newest always stays


# -- retention -----------------------------------------------------------------------------------------
def meta(n: int, reason: str = "") -> dict:
    return {"name": f"b{n:03d}", "file": f"b{n:03d}.sql.gz", "epoch": float(n), "reason": reason}
