"""The rehearsal guard (invariant 8): production's migration is refused for a release whose rehearsal on a
fresh copy of production is missing, not the one its rehearsal wrote, stale, unsafe or stalls writes too
long (the last two unless DEPLOY_ALLOW_UNSAFE names the release).

The report lives on the rehearsing stage's primary host (test), which testers may write to. So the guard
trusts it only when its sha256 is one the rehearsal recorded, before it wrote the report, where that host
cannot rewrite it:
  - this deploying machine: build/rehearsals/<id>.json beside stages.ini, when this machine rehearsed;
  - the backup host of the copied database (production's): .deploy/rehearsals/<id>.record.json, counted
    only when that host is not a host of the rehearsing stage (by config.host_key).
Either one matching is enough (a team: another machine rehearsed, production's backup host vouches). Then
the report must be of this release, of a copy of this database, from production's applied migrations as
they are, and list exactly the migrations pending on production. A report that fails any of these is set
aside (<id>.refused.json or <id>.stale.json), so that the next deploy rehearses again.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
from pathlib import Path

from ...config import Config, Stage, host_key
from ...errors import StepError
from ...runtime.common import json_or_none, read_text, write_file
from .rehearsal import production_plan, read_report_bytes, report_bytes, set_aside
from .rehearsal_report import Witness, markdown, other_rehearsal, record_of, refusal, stale, text_table, untrusted


def rehearsing_stage(config, stage: Stage) -> Stage | None:
    """The stage whose migrate rehearses this stage's database: the stage itself when it has restore_from,
    else up its promote_from chain, the first stage restoring its database from this stage's."""
    if stage.restore_from:
        return stage
    cur = config.stages.get(stage.promote_from) if stage.promote_from else None
    while cur is not None:
        if cur.restore_from and cur.restore_from == stage.database:
            return cur
        cur = config.stages.get(cur.promote_from) if cur.promote_from else None
    return None


def local_record(config: Config, rid: str) -> Path:
    """This deploying machine's record of a rehearsal it ran (beside stages.ini, like doit's dep file)."""
    return config.build_dir / "rehearsals" / f"{rid}.json"


def keep_markdown(config: Config, report: dict) -> Path:
    """build/rehearsals/<id>.md: the report as Markdown on this machine too, for CI (GITHUB_STEP_SUMMARY,
    an artifact); nothing trusts it (the guard reads the JSON on the host)."""
    path = local_record(config, report["release"]).with_suffix(".md")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(markdown(report))
    os.replace(tmp, path)
    return path


def record_rehearsal(session, rs: Stage, report: dict) -> None:
    """The report's sha256, here and on the copied database's backup host: written before the report."""
    config, rid = session.config, report["release"]
    record = record_of(report, report_bytes(report), str(rs.primary),
                       f"{getpass.getuser()}@{socket.gethostname()}")
    text = json.dumps(record, sort_keys=True).encode() + b"\n"
    path = local_record(config, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(text)
    os.replace(tmp, path)
    host = session.backup_host(config.databases[rs.restore_from])
    session.lock([host], f"migrate:{rs.name}")
    session.hosts.one(host, lambda t: write_file(t, session.layout.rehearsal_record(rid), text, "644", public=True))


def witnesses(session, rs: Stage, rid: str) -> list[Witness]:
    config, layout = session.config, session.layout
    path = local_record(config, rid)
    mine = json_or_none(path.read_text(errors="replace")) if path.is_file() else None
    out = [Witness(f"this machine's {path.relative_to(config.workdir)}", mine)]
    src = config.databases[rs.restore_from]
    host = session.backup_host(src)
    label = f"{host} (backup host of {src.name})"
    if host_key(host) in {host_key(h) for h in rs.hosts}:
        return [*out, Witness(label, None, f"a host of stage {rs.name}, where the report is")]
    theirs = session.hosts.one(host, lambda t: json_or_none(read_text(t, layout.rehearsal_record(rid))))
    return [*out, Witness(label, theirs)]


def guard_production(session, stage: Stage, rid: str) -> str:
    """Raise StepError when the release may not migrate; prints the report; returns a note for the summary."""
    config, layout = session.config, session.layout
    rs = rehearsing_stage(config, stage)
    if rs is None:
        return ""
    first = rs.primary
    what = f"migrate:{stage.name}: refused to migrate database {stage.database}"
    again = f"run doit deploy:{rs.name} again (it rehearses {rid} on a fresh copy of {stage.database})"
    data = session.hosts.one(first, lambda t: read_report_bytes(t, layout, rid))
    if data is None:
        raise StepError(f"{what}: release {rid} has no migration rehearsal ({first}:{layout.rehearsal(rid)} "
                        f"is missing); {again}")
    plan = session.hosts.one(stage.primary, lambda t: production_plan(t, layout, config, stage, rid))
    applied, pending = plan if plan is not None else (None, None)
    report = json_or_none(data.decode(errors="replace"))
    if not isinstance(report, dict):
        problem = "the report is not a rehearsal report (not a JSON object)"
    else:
        problem = (other_rehearsal(report, rid, stage.database) or untrusted(data, witnesses(session, rs, rid))
                   or stale(report, rid, applied, pending))
    if problem:
        session.lock([first], f"migrate:{stage.name}")
        why = "stale" if problem.startswith(f"the rehearsal of {rid} is stale") else "refused"
        aside = session.hosts.one(first, lambda t: set_aside(t, layout, rid, why))
        raise StepError(f"{what}: {problem}; {first}:{aside} holds it now; {again}")
    print(text_table(report), flush=True)
    allow = session.environ.get("DEPLOY_ALLOW_UNSAFE", "")
    reason = refusal(report, rid, applied, config.project.max_write_stall, allow, pending)
    if reason:
        raise StepError(f"{what}: {reason}; change the migration, or accept it for this release only with "
                        f"DEPLOY_ALLOW_UNSAFE={rid}")
    if allow == rid and refusal(report, rid, applied, config.project.max_write_stall, "", pending):
        return f" (its rehearsal's flags accepted by DEPLOY_ALLOW_UNSAFE={rid})"
    return ""
