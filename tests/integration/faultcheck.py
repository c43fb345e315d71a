"""The fault matrix's one checker: what must hold after a faulted run, after the next plain run, and after a
rollback. Every check reads the real state (links, files and logs on the hosts through their directories,
production's tables in MariaDB); each returns a list of problems, so a cell reports every invariant it broke.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from urllib.parse import quote

from tests.lab.common import NASTY_PASSWORD
from tests.lab.faults import Cell, Lab

ROOT = "/srv/blog"
SECRETS = (NASTY_PASSWORD.encode(), quote(NASTY_PASSWORD, safe="").encode())
BULK = {"venvs", "wheels", "artifacts"}    # the releases' build inputs: no secret goes there, and they are big


@dataclass
class Baseline:
    stage: str
    old: str
    new: str
    t0: float
    prod_sums: dict
    prod_counts: dict
    reloads: list[int]     # reload lines of the stage, per host
    records: list[int]     # release log records, per host


def baseline(lab: Lab, cell: Cell, old: str, new: str, t0: float) -> Baseline:
    return Baseline(cell.stage, old, new, t0, lab.db.checksums(lab.prod), lab.db.row_counts(lab.prod),
                    [len(reloads(h, cell.stage)) for h in lab.hosts], [len(lab.p.log(h)) for h in lab.hosts])


def reloads(host, stage: str) -> list[str]:
    """The releases reloaded for the stage on the host, oldest first (the lab's reload_command writes them)."""
    p = host.path(f"{ROOT}/shared/reloads-{stage}")
    return [ln.rsplit("/", 1)[-1] for ln in p.read_text().splitlines()] if p.exists() else []


def intent(host, stage: str) -> dict | None:
    p = host.path(f"{ROOT}/.deploy/intent-{stage}.json")
    return json.loads(p.read_text()) if p.exists() else None


def switched_fully(lab: Lab, base: Baseline, i: int) -> bool:
    """Host i went live on the new release in this cell with its reload done and its release-log record."""
    h = lab.hosts[i]
    records = [r for r in lab.p.log(h)[base.records[i]:] if r["stage"] == base.stage]
    return any(r["release"] == base.new and r["result"] == "ok" for r in records) and \
        base.new in reloads(h, base.stage)[base.reloads[i]:]


def check_links_after_fault(lab: Lab, base: Baseline) -> list[str]:
    """Every link is on the old release or on the new one switched fully; a dead run (or a host that went
    down) may leave a new link whose switch is not finished only under an intent that says so."""
    problems = []
    for i, (h, link) in enumerate(zip(lab.hosts, lab.links(base.stage))):
        if link == base.old:
            continue
        if link != base.new:
            problems.append(f"{h.name}: {base.stage} link on {link}, neither the old {base.old} nor the new release")
        elif not switched_fully(lab, base, i) and (intent(h, base.stage) or {}).get("release") != base.new:
            problems.append(f"{h.name}: {base.stage} link on the new release without its reload and release-log "
                            "record, and no intent tells the next run to finish it (between)")
    return problems


def check_settled(lab: Lab, base: Baseline) -> list[str]:
    """After the plain rerun: the new release live everywhere, switched fully, nothing half-done."""
    problems = []
    for i, h in enumerate(lab.hosts):
        link = lab.links(base.stage)[i]
        last = next((r for r in reversed(lab.p.log(h)) if r["stage"] == base.stage), {})
        done = reloads(h, base.stage)
        if link != base.new:
            problems.append(f"{h.name}: {base.stage} link on {link}, not the new release {base.new}")
        if (last.get("release"), last.get("result"), last.get("previous")) != (base.new, "ok", base.old):
            problems.append(f"{h.name}: last {base.stage} record is {last.get('release')}/{last.get('result')} "
                            f"(previous {last.get('previous')}), not {base.new}/ok after {base.old}")
        if not done[base.reloads[i]:] or done[-1] != base.new:
            problems.append(f"{h.name}: the last reload of {base.stage} was of {done[-1] if done else None}, "
                            f"not of {base.new}")
        if intent(h, base.stage):
            problems.append(f"{h.name}: an intent is left: {intent(h, base.stage)}")
        if h.path(f"{ROOT}/.deploy/lock").exists():
            problems.append(f"{h.name}: .deploy/lock is left")
    if lab.health.since(base.t0) < len(lab.hosts):
        problems.append(f"health_url was asked {lab.health.since(base.t0)} time(s) for {len(lab.hosts)} hosts")
    return problems


def check_leftovers(lab: Lab) -> list[str]:
    """No database option file, no copied dump, no half-written backup; no file in .deploy/ holding the
    database password."""
    problems = []
    for h in lab.hosts:
        deploy, backups = h.path(f"{ROOT}/.deploy"), h.path(f"{ROOT}/db_backup")
        left = [*deploy.glob("cnf.*"), *deploy.glob("incoming/*"), *backups.glob(".*.partial")]
        problems += [f"{h.name}: left behind: {p.relative_to(h.root)}" for p in left]
        for dirpath, dirnames, filenames in os.walk(deploy):
            dirnames[:] = [d for d in dirnames if not (dirpath == str(deploy) and d in BULK)]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as f:
                        data = f.read()
                    if any(s in data for s in SECRETS):
                        problems.append(f"{h.name}: {os.path.relpath(path, h.root)} holds the database password")
    return problems


def verified(lab: Lab, meta: dict) -> bool:
    """The backup's file is there with the size and sha256 its metadata records."""
    path = lab.hosts[1].path(f"{ROOT}/db_backup/{meta['file']}")
    return meta.get("status") == "verified" and path.is_file() and path.stat().st_size == meta["size"] and \
        hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]


def check_production(lab: Lab, base: Baseline, settled: bool) -> list[str]:
    """Production untouched (checksums), or migrated after a verified "before" backup that holds what it had
    and (once settled) with a verified "after" backup that holds what it has; the switch's record names both."""
    if lab.db.checksums(lab.prod) == base.prod_sums:
        return []
    if base.stage != "staging":
        return [f"production's tables changed during {base.stage}'s run"]
    metas = {m["file"]: m for m in lab.p.backups(lab.hosts[1]) if m["epoch"] >= base.t0}
    tag = f"migrate:staging {base.new}"
    befores = [m for m in metas.values() if m["reason"] == f"before {tag}" and m["tables"] == base.prod_counts
               and verified(lab, m)]
    if not befores:
        return ["production changed with no verified 'before' backup of what it held"]
    if not settled:
        return []
    problems = []
    for h in lab.hosts:
        rec = next((r for r in reversed(lab.p.log(h)) if r["stage"] == "staging"), {})
        named = [metas.get(f) for f in rec.get("backups", [])]
        if len(named) != 2 or None in named:
            problems.append(f"{h.name}: the staging record names backups {rec.get('backups')}, not this cell's "
                            "'before' and 'after' backups")
            continue
        before, after = named
        if before["reason"] != f"before {tag}" or before["tables"] != base.prod_counts or not verified(lab, before):
            problems.append(f"{h.name}: {before['file']} is no verified 'before' backup of production as it was")
        if after["reason"] != f"after {tag}" or after["epoch"] < before["epoch"] or not verified(lab, after) or \
                after["tables"] != lab.db.row_counts(lab.prod):
            problems.append(f"{h.name}: {after['file']} is no verified 'after' backup of production as it is")
    return problems


def status_row(res, stage: str) -> str:
    """The stage's row of the `doit status` table that a run printed (`doit <command> status`)."""
    rows = [ln for ln in res.stdout.splitlines() if ln.split(" ", 1)[0] == stage]
    return rows[-1] if res.returncode == 0 and rows else f"(no status row: exit {res.returncode}: {res.stderr})"


def check_status(lab: Lab, res, stage: str, release: str) -> list[str]:
    row = status_row(res, stage)
    ok = (row.split()[1:2] == [release] and f"{len(lab.hosts)}/{len(lab.hosts)} agree" in row and "HALF" not in row
          and "UNFINISHED" not in row)
    return [] if ok and lab.live(stage) == release else [f"status says {row!r}; the links are {lab.links(stage)}"]


def check_rollback(lab: Lab, base: Baseline) -> list[str]:
    """`doit rollback:<stage> status`: back on the old release everywhere, the new one marked bad, and the
    status table printed right after says so."""
    res = lab.p.doit(f"rollback:{base.stage}", "status")
    if res.returncode != 0:
        return [f"rollback:{base.stage} exited {res.returncode}: {res.stderr.strip()[-400:]}"]
    problems = [f"{h.name}: rollback left {base.stage} on {link}, not {base.old}"
                for h, link in zip(lab.hosts, lab.links(base.stage)) if link != base.old]
    for h in lab.hosts:
        tail = [(r["release"], r["result"]) for r in lab.p.log(h) if r["stage"] == base.stage][-2:]
        if sorted(tail) != sorted([(base.new, "bad"), (base.old, "rollback")]):
            problems.append(f"{h.name}: the release log ends with {tail}, not {base.new} bad and {base.old} back")
    return problems + check_status(lab, res, base.stage, base.old)


def check_unlock(lab: Lab, cell: Cell, unlock, run) -> list[str]:
    """The second checkout's unlock during the paused run: refused with the holder named (one line, nothing
    removed) unless forced; forced, it removed the lock and said whose it was."""
    if unlock is None:
        return ["the run never paused: nothing was unlocked"]
    pid = f"pid {run.pid}"
    if cell.kind == "unlock":
        lines = unlock.stderr.strip().splitlines()
        if unlock.returncode == 0 or len(lines) != 1 or pid not in unlock.stderr or "--force" not in unlock.stderr:
            return [f"unlock of a live run was not refused in one line naming it ({pid}): exit "
                    f"{unlock.returncode}: {unlock.stdout} {unlock.stderr}"]
        return []
    if unlock.returncode != 0 or "removed the lock of" not in unlock.stdout:
        return [f"unlock --force exited {unlock.returncode}: {unlock.stdout} {unlock.stderr}"]
    return []


def check_claims(lab: Lab, base: Baseline, res) -> list[str]:
    """A run that says every host went back has every host on the old release; one that lost hosts says
    what each runs."""
    links = lab.links(base.stage)
    if "back on its previous release" in res.stderr and any(link != base.old for link in links):
        return [f"the run says every host went back, but the links are {links}: {res.stderr.strip()[-400:]}"]
    if "NOT every host" in res.stderr:
        missing = [h.name for h, link in zip(lab.hosts, links) if f"{h.url} runs {link}" not in res.stderr]
        if missing:
            return [f"the run does not say what {', '.join(missing)} run(s): {res.stderr.strip()[-400:]}"]
    return []
