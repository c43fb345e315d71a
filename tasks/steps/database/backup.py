"""backup: a verified backup of a database, made on its backup host into db_backup/ (mode 0600).

A backup counts only when complete and checked: mysqldump's completion line (sqlite: integrity_check),
gzip integrity, sha256 and the rows of every table; the database's engine makes and checks it
(tasks/engines/). MySQL/MariaDB: with python3 on the host (the usual case), all of it is
done in ONE pass while the dump streams (hostside/dumpfilter.py: zlib level 1, the compressed bytes hashed and
inflated again, rows counted from the INSERT statements); without python3, the dump is written by gzip -1
and checked afterwards (gzip -t, the last line, sha256sum, COUNT(*) before and after). It is written under a
.partial name and its metadata file is written last: a dump that died half-way has no metadata and is never
listed. The newest is chosen by the metadata's time.
"""
from __future__ import annotations

import json
import posixpath
from datetime import datetime, timezone

from ...config import Config, Database
from ...engines import engine_for
from ...errors import StepError
from ...layout import Layout, backup_name
from ...runtime.common import json_or_none, write_cmd
from ...runtime.leftovers import list_leftovers, owner_tag, sweep_listed
from ...transport import Cmd, CommandFailed, Transport, call_key
from .backupfiles import metadata_problem
from .retention import backups_to_remove, prune_argv

# $1 db_backup/: made 0700 (its files are 0600)
MAKE_DIR = 'umask 077; mkdir -p "$1" && chmod 700 "$1"'
# each metadata file of $1: a line "\036<its file name>", then its content
LIST = 'for f in "$1"/*.json; do [ -f "$f" ] && printf "\\036%s\\n" "${f##*/}" && cat "$f" && echo; done; true'


def list_backups(t: Transport, layout: Layout, db: Database) -> list[dict]:
    """Verified backups of db on this host, oldest first (by the time in their metadata). Metadata that
    names anything but a file of db_backup/ is reported (once a run and host) and ignored."""
    argv = list_cmd(layout).argv
    code, out, err = t.call_kept(argv)      # backup:<db>'s check: its read rode with the lock's take
    if code != 0:
        raise CommandFailed(t.host, argv, code, err)
    return listed_backups(t, layout, db, out)


def list_cmd(layout: Layout) -> Cmd:
    """list_backups' read, for a batch that carries it (then listed_backups with its output)."""
    return Cmd(["sh", "-c", LIST, "sh", layout.backups])


def listed_backups(t: Transport, layout: Layout, db: Database, text: str) -> list[dict]:
    """list_backups from LIST's output read just now."""
    metas, ignored = parse_backup_list(text, db.name)
    seen = t.__dict__.setdefault("ignored_backups", set())
    for line in ignored:
        if line not in seen:
            seen.add(line)
            print(f"   {t.host}: {layout.backups}/{line}; delete it, or fix it if it is a backup of ours", flush=True)
    return metas


def parse_backup_list(text: str, database: str) -> tuple[list[dict], list[str]]:
    """LIST's output -> (the verified backups of `database`, oldest first; one line for each metadata file
    ignored because of what it names). A file that is not a JSON object is no metadata, silently."""
    found, ignored = [], []
    for chunk in text.split("\036")[1:]:
        filename, _, content = chunk.partition("\n")
        meta = json_or_none(content)
        if not isinstance(meta, dict):
            continue
        problem = metadata_problem(meta, filename)
        if problem:
            ignored.append(f"{filename}: ignored: {problem}")
        elif meta.get("status") == "verified" and meta.get("database") == database \
                and isinstance(meta.get("epoch"), (int, float)):
            found.append(meta)
    return sorted(found, key=lambda m: m["epoch"]), ignored


def newest_backup(t: Transport, layout: Layout, db: Database) -> dict | None:
    backups = list_backups(t, layout, db)
    return backups[-1] if backups else None


def take_backup(session, db: Database, reason: str = "") -> dict:
    """backup:<db>: a verified backup now, on the database's backup host, under that host's lock."""
    host = session.backup_host(db)
    session.lock([host], f"backup:{db.name}")
    return session.hosts.one(host, lambda t: backup_database(t, session.layout, session.config, db, reason))


def backup_database(t: Transport, layout: Layout, config: Config, db: Database, reason: str = "") -> dict:
    """Make, check and record one backup; returns its metadata. Under the host's lock (take_backup, the
    rehearsal's refresh, the migration's): no other run changes db_backup/ meanwhile, so the backups listed
    before the dump are the ones retention weighs after it. Three exchanges beside the engine's own: the
    directory made with the dead runs' leftovers and the backups listed; the dump; the dump moved into
    place, its metadata written (last: a dump without it is never listed) and the old backups pruned, each
    only once the one before it succeeded."""
    now = datetime.now(timezone.utc)
    name = backup_name(config.project.name, db.name, now)
    engine = engine_for(db)
    ext = engine.backup_ext
    final = posixpath.join(layout.backups, name + ext)
    partial = posixpath.join(layout.backups, f".{owner_tag()}.{name}{ext}.partial")
    listed = t.kept(call_key(list_cmd(layout).argv))     # the check's listing, when nothing was sent since
    listed = listed if listed and listed[0] == 0 else None
    _, leftovers, *listing = _answers(t, [Cmd(["sh", "-c", MAKE_DIR, "sh", layout.backups]),
                                             list_leftovers(layout), *([] if listed else [list_cmd(layout)])])
    sweep_listed(t, leftovers)
    before = listed_backups(t, layout, db, listed[1] if listed else listing[0])
    try:
        checked = engine.dump(t, layout, db, partial)
    except Exception as exc:
        t.call(["rm", "-f", "--", partial, partial + ".db"])
        raise StepError(f"backup:{db.name}: {_why(exc)}; no backup was recorded") from None
    meta = {"name": name, "file": posixpath.basename(final), "database": db.name, "engine": db.engine,
            "source": engine.backup_source(db),
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "epoch": now.timestamp(), **checked,
            "status": "verified", "host": str(t.host), "reason": reason}
    doomed = backups_to_remove(sorted([*before, meta], key=lambda m: m["epoch"]), config.project.keep_backups,
                               config.project.keep_releases)
    _answers(t, [Cmd(["mv", "-f", "--", partial, final]),
                 write_cmd(posixpath.join(layout.backups, name + ".json"), json.dumps(meta, sort_keys=True).encode(),
                           if_ok=True),
                 *(Cmd(prune_argv(layout, m), if_ok=True) for m in doomed)])
    return meta


def _answers(t: Transport, commands: list[Cmd]) -> list[str]:
    """The commands in one exchange (each runs only when the one before it succeeded, where marked); their
    stdout. The first that failed raises CommandFailed, as t.run would."""
    answers = t.batch(commands)
    for c, (code, _, err) in zip(commands, answers):
        if code != 0:
            raise CommandFailed(t.host, c.argv, code, err)
    return [out for _, out, _ in answers]


def _why(exc: Exception) -> str:
    """A failed dump's error: the filter's verdict, and mysqldump's own line when it said one."""
    if isinstance(exc, CommandFailed):
        lines = [ln.strip() for ln in exc.stderr.splitlines() if ln.strip()]
        if len(lines) > 1:
            return f"{exc}; {lines[0]}" if lines[0] not in str(exc) else str(exc)
    return str(exc)
