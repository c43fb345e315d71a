"""The rehearsal guard (invariant 8): production's migration is refused for a release whose rehearsal on a
fresh copy of production is missing, stale, unsafe or stalls writes too long (the last two unless
DEPLOY_ALLOW_UNSAFE names the release)."""
from __future__ import annotations

from ..config import Stage
from ..errors import StepError
from ..rehearsal import refusal, text_table
from .rehearsal import applied_migrations, mark_stale, read_report


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


def guard_production(session, stage: Stage, rid: str) -> str:
    """Raise StepError when the release may not migrate; prints the report; returns a note for the summary."""
    config, layout = session.config, session.layout
    rs = rehearsing_stage(config, stage)
    if rs is None:
        return ""
    report = session.hosts.one(rs.hosts[0], lambda t: read_report(t, layout, rid))
    applied = session.hosts.one(stage.hosts[0], lambda t: applied_migrations(t, layout, config, stage, rid))
    if report:
        print(text_table(report), flush=True)
    allow = session.environ.get("DEPLOY_ALLOW_UNSAFE", "")
    reason = refusal(report, rid, applied, config.project.max_write_stall, allow)
    what = f"migrate:{stage.name}: refused to migrate database {stage.database}"
    if reason and (report is None or "stale" in reason):
        if report is not None:
            session.lock([rs.hosts[0]], f"migrate:{stage.name}")
            session.hosts.one(rs.hosts[0], lambda t: mark_stale(t, layout, rid))
        raise StepError(f"{what}: {reason}; run doit deploy:{rs.name} again (it rehearses {rid} on a fresh "
                        f"copy of {stage.database})")
    if reason:
        raise StepError(f"{what}: {reason}; change the migration, or accept it for this release only with "
                        f"DEPLOY_ALLOW_UNSAFE={rid}")
    if allow == rid and refusal(report, rid, applied, config.project.max_write_stall, ""):
        return f" (its rehearsal's flags accepted by DEPLOY_ALLOW_UNSAFE={rid})"
    return ""
