"""retention: which backups of a database stay. Routine ones (backup:<db>, the rehearsal's refreshes) are
kept by count; the before/after pair of each of the last keep_releases migrations of a stage is kept apart
from them, since the release log names them. The newest backup always stays."""
from __future__ import annotations

import posixpath
import re

from ...layout import Layout
from ...transport import Transport
from .backupfiles import backup_path

MIGRATION_RE = re.compile(r"^(?:before|after) migrate:(?P<stage>\S+) (?P<release>\S+)$")


def backups_to_remove(metas: list[dict], keep: int, keep_migrations: int) -> list[dict]:
    """Pure: which verified backups (oldest first) retention removes. The backups taken around a migration
    (reason `before|after migrate:<stage> <release>`, the ones a release log names) are kept apart from the
    routine ones: all of them for the last `keep_migrations` releases migrated on each stage; of the others,
    the newest `keep`. The newest backup of all always stays."""
    routine = [m for m in metas if not MIGRATION_RE.match(m.get("reason") or "")]
    doomed = routine[:-keep] if keep > 0 else list(routine)
    last_seen: dict[tuple[str, str], float] = {}
    for m in metas:
        hit = MIGRATION_RE.match(m.get("reason") or "")
        if hit:
            last_seen[(hit["stage"], hit["release"])] = m["epoch"]
    kept = set()
    for stage in {s for s, _ in last_seen}:
        mine = sorted((e, k) for k, e in last_seen.items() if k[0] == stage)
        kept.update(k for _, k in mine[-keep_migrations:])
    for m in metas:
        hit = MIGRATION_RE.match(m.get("reason") or "")
        if hit and (hit["stage"], hit["release"]) not in kept:
            doomed.append(m)
    newest = metas[-1]["name"] if metas else None
    return sorted((m for m in doomed if m["name"] != newest), key=lambda m: m["epoch"])


def prune_backups(t: Transport, layout: Layout, metas: list[dict], keep: int, keep_migrations: int = 5) -> None:
    """Retention (backups_to_remove) of a database's verified backups, oldest first; metadata goes first, so
    none points at nothing. Only files of db_backup/ (list_backups ignores metadata naming anything else,
    and backup_path checks again)."""
    for meta in backups_to_remove(metas, keep, keep_migrations):
        t.run(prune_argv(layout, meta))


def prune_argv(layout: Layout, meta: dict) -> list[str]:
    """The command that removes one backup: its metadata first, so none points at nothing."""
    return ["rm", "-f", "--", posixpath.join(layout.backups, meta["name"] + ".json"), backup_path(layout, meta)]

