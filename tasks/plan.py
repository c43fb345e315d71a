"""plan:<stage>: what deploy:/promote:<stage> would do now, node by node, asked of the real hosts and databases
(docs/commands.md "plan"). It writes nothing anywhere and takes no lock: every check here is a pure read
(the nodes' own checks, minus what they remember or sweep), on the run's one connection per host. A check
that cannot be made without writing, or without what this machine lacks, says `not checked` and why.

The database is read on the hosts, through the release's own Django and its env file there
(`manage.py showmigrations --plan`: a read): no password is needed on this machine. Like commands.py, no
doit here: plan_stage returns the lines, format_plan makes them text.
"""
from __future__ import annotations

import time
from typing import Sequence

from .config import ConfigError, Database, Host, Stage
from .errors import StepError
from .plan_text import (
    Step,
    backup_step,
    failed_text,
    format_plan,
    host_failure,
    hosts_text,
    parse_showmigrations,
    showmigrations_argv,
    switch_step,
)
from .releases import Releases
from .runtime.common import json_or_none, read_text
from .session import Session
from .steps import build as build_step
from .steps.archive import Release, local_release
from .steps.environment import app_command, env_file
from .steps.operate import host_labels
from .steps.switch import read_state
from .steps.upload import has_release
from .steps.verify import source_of
from .transport import CommandFailed


# -- the checks, on the hosts ------------------------------------------------------------------------
class Planner:
    """One stage's plan: what each node's check finds. What one node learns (the release, which hosts have
    it built) is kept for the next; nothing is kept beyond the run, and nothing is written."""

    def __init__(self, s: Session, r: Releases, stage: Stage):
        self.s, self.r, self.stage, self.config = s, r, stage, s.config
        self.labels = host_labels(stage.hosts)
        self.rid: str | None = None
        self.release: Release | None = None
        self.built: dict[Host, bool] = {}
        self.notes: list[str] = []
        self.stop: str | None = None    # why the command would stop before its nodes (a promote refused)
        self.restores = False          # restore:<stage> would refresh the copy first
        self.rehearsed: list[str] | None = None   # the migrations the release's last rehearsal lists

    # which release --------------------------------------------------------------------------------------
    def archive(self, node: str) -> Step:
        rid = self.rid = self.r.source_release_id()
        rev = self.r.revision().commit[:12]
        here = local_release(self.config.build_dir, rid)
        try:
            self.release = self.r.built_release() if here else None
        except (StepError, CommandFailed) as exc:   # the hosts' python3 not read: the archive is still here
            self.release = here
            return Step(node, None, f"not checked: build/{rid}.tar.gz is there, but its wheelhouse's python3 was "
                                    f"not compared with the hosts' ({failed_text(exc)})")
        if self.release is not None:
            return Step(node, True, f"up to date: build/{rid}.tar.gz (sha256 {self.release.sha256[:12]})")
        why = ("its wheelhouse is for another python3 than the hosts'" if here else
               f"build/{rid}.tar.gz is missing or damaged")
        return Step(node, False, f"would archive {rid} (revision {rev}): {why}")

    def promoted(self) -> None:
        """The release promote:<stage> would take: the one live on promote_from, verified there. Read from
        build/ or from its proof on the source's first host (a promote would fetch it: a plan does not)."""
        s, src = self.s, self.config.stages[self.stage.promote_from]
        what = self.stage.chain_task
        rid, states = source_of(s, src, what)
        self.rid = rid
        bad = [str(h) for h, st in zip(src.hosts, states) if not st or st.get("release") != rid or not st.get("ok")]
        if bad:
            self.stop = (f"release {rid} has not passed verify:{src.name} on {', '.join(bad)}; run doit "
                         f"verify:{src.name} first")
        self.release = local_release(self.config.build_dir, rid)
        if self.release is None:
            text = s.hosts.one(src.hosts[0], lambda t: read_text(t, s.layout.artifact_proof(rid)))
            try:
                self.release = Release.from_json(text) if text else None
            except (ValueError, TypeError):
                self.release = None
            if self.release is None:
                self.stop = self.stop or f"{src.hosts[0]} holds no archive of {rid}; deploy it again"
            else:
                self.notes.append(f"would fetch {rid}'s archive from {src.hosts[0]} into build/")

    # the nodes -------------------------------------------------------------------------------------------
    def backup(self, node: str, db: Database) -> Step:
        from .steps.database.backup import newest_backup
        host = self.s.backup_host(db)
        newest = self.s.hosts.one(host, lambda t: newest_backup(t, self.s.layout, db))
        step = backup_step(node, db, host, newest, time.time(), self.config.project.backup_max_age)
        self.restores = self.restores or step.done is False   # the copy then comes from the new backup
        return step

    def upload(self, node: str) -> Step:
        hosts = self.stage.hosts
        if self.release is None:
            return Step(node, False, f"would upload {self.rid} to {hosts_text(hosts, self.labels, len(hosts))} "
                                     "(not archived yet)")
        found = self.s.hosts.outcomes(list(hosts), lambda t: has_release(t, self.s.layout, self.release), wide=True)
        return self._per_host(node, found, f"would upload {self.rid} to {{}} (lacking the archive)",
                              f"up to date: every host holds {self.rid}")

    def build(self, node: str) -> Step:
        hosts, stage = self.stage.hosts, self.stage
        if self.release is None:
            self.built = {h: False for h in hosts}
            return Step(node, False, f"would build {self.rid} on {hosts_text(hosts, self.labels, len(hosts))}")
        keep_env, note = False, ()
        try:
            env_file(self.s.layout, self.config, stage, self.rid)
        except ConfigError as exc:   # the env file's content is not known here: the rest is compared
            keep_env, note = True, (f"its env file is not compared: {failed_text(exc)}",)
        found = self.s.hosts.outcomes(list(hosts), lambda t: build_step.is_built(
            t, self.s.layout, self.config, stage, self.release, keep_env=keep_env), wide=True)
        self.built = {h: v is True for h, v in zip(hosts, found)}
        step = self._per_host(node, found, f"would build {self.rid} on {{}} (not built there for {stage.name}, or "
                                           "its build settings or env changed)",
                              f"up to date: {self.rid} built on every host")
        return Step(step.node, step.done, step.says, (*step.details, *note))

    def restore(self, node: str) -> Step:
        from .steps.database.backup import newest_backup
        from .steps.database.restore import holds, restored
        s, db = self.s, self.config.stage_database(self.stage)
        src = self.config.databases[self.stage.restore_from]
        if self.restores:
            return Step(node, False, f"would restore {db.name} from the new backup of {src.name} (backup:{src.name} "
                                     "comes first)")
        newest = s.hosts.one(s.backup_host(src), lambda t: newest_backup(t, s.layout, src))
        marker = restored(s, db)
        if newest and holds(marker, newest["name"], self.rid):
            return Step(node, True, f"up to date: {db.name} holds {newest['name']}, restored for {self.rid}")
        self.restores = True
        if not newest:
            return Step(node, False, f"would restore {db.name}, but {src.name} has no verified backup "
                                     f"(run doit backup:{src.name})")
        held = (f"it holds {marker.get('backup')}, restored for {marker.get('release')}" if marker
                else "it was never restored")
        return Step(node, False, f"would restore {db.name} := {newest['name']} ({held})")

    def switch(self, node: str) -> Step:
        stage = self.stage
        found = self.s.hosts.outcomes(list(stage.hosts), lambda t: read_state(t, self.s, stage, self.rid), wide=True)
        failed = [host_failure(self.labels[h], h, x) for h, x in zip(stage.hosts, found) if isinstance(x, Exception)]
        if failed:
            return Step(node, None, "not checked: " + "; ".join(failed))
        return switch_step(node, stage.link, self.rid, dict(zip(stage.hosts, found)), self.labels)

    def verify(self, node: str) -> Step:
        return Step(node, False, f"would run infra-tests against {len(self.stage.hosts)} host(s) (it always runs)")

    def _per_host(self, node: str, found: list, would: str, done: str) -> Step:
        failed = [host_failure(self.labels[h], h, x) for h, x in zip(self.stage.hosts, found)
                  if isinstance(x, Exception)]
        lacking = [h for h, x in zip(self.stage.hosts, found) if x is False]
        if lacking:
            return Step(node, False, would.format(hosts_text(lacking, self.labels, len(self.stage.hosts))),
                        tuple(f"not checked on {f}" for f in failed))
        if failed:
            rest = "; up to date on the other host(s)" if len(failed) < len(found) else ""
            return Step(node, None, "not checked: " + "; ".join(failed) + rest)
        return Step(node, True, done)

    # migrate ---------------------------------------------------------------------------------------------
    def pending(self, host: Host) -> tuple[list[str], list[str]] | str:
        """(applied, pending) on the stage's database, read on `host` by the release's own Django with its env
        there; or why it was not read."""
        stage, rid = self.stage, self.rid
        argv = showmigrations_argv(self.config.project.migrate_argv)
        if argv is None:
            return f"migrate_command is not Django's migrate ({self.config.project.migrate_command!r})"
        if not self.built.get(host):
            return f"{rid} is not built for {stage.name} on {self.labels[host]} yet"
        try:
            out = self.s.hosts.one(host, lambda t: t.run(app_command(self.s.layout, stage.name, rid, argv)))
        except (CommandFailed, StepError) as exc:
            return f"showmigrations failed on {self.labels[host]}: {failed_text(exc)}"
        return parse_showmigrations(out)

    def marker_step(self, node: str) -> Step:
        """A migrate_command that is not Django's: the marker of the release last migrated on the stage."""
        s, host = self.s, self.stage.primary
        last = (s.hosts.one(host, lambda t: read_text(t, s.layout.migrated_marker(self.stage.name))) or "").strip()
        if last == self.rid:
            return Step(node, True, f"up to date: {self.rid} was migrated on this stage")
        return Step(node, False, f"would run migrate_command with {self.rid} (the last migrated here: "
                                 f"{last or 'none'})")

    def migrate(self, node: str) -> Step:
        return self.rehearse(node) if self.stage.restore_from else self.migrate_production(node)

    def rehearse(self, node: str) -> Step:
        s, stage, rid, first = self.s, self.stage, self.rid, self.stage.primary
        src = stage.restore_from
        if showmigrations_argv(self.config.project.migrate_argv) is None:
            return self.marker_step(node)
        if self.restores:
            return Step(node, False, f"would rehearse the migrations of {rid} on a fresh copy of {src} (pending "
                                     "not checked: the copy is restored first)")
        plan = self.pending(first)
        if isinstance(plan, str):
            return Step(node, False, f"would rehearse the migrations of {rid} on the copy of {src} (pending not "
                                     f"checked: {plan})")
        pending = plan[1]
        report = s.hosts.one(first, lambda t: t.exists(s.layout.rehearsal(rid)))
        if not pending and report:
            return Step(node, True, f"up to date: nothing pending; {s.layout.rehearsal(rid)} is on "
                                    f"{self.labels[first]}")
        if not pending:
            return Step(node, False, f"would write the rehearsal report of {rid} (nothing pending, but "
                                     f"{s.layout.rehearsal(rid)} is missing on {self.labels[first]})")
        return Step(node, False, f"would rehearse {len(pending)} pending migration(s) on the copy of {src}: "
                                 + ", ".join(pending))

    def migrate_production(self, node: str) -> Step:
        from .steps.migration.production_migration import unfinished
        s, stage = self.s, self.stage
        db = self.config.stage_database(stage)
        if showmigrations_argv(self.config.project.migrate_argv) is None:
            return self.marker_step(node)
        plan = self.pending(stage.primary)
        open_record = unfinished(s, stage)
        if not isinstance(plan, str) and not plan[1] and not open_record:
            return Step(node, True, f"up to date: nothing pending on {db.name}")
        details = list(self.guard_details(plan))
        if open_record:
            details.insert(0, f"an earlier migration of {db.name} lacks its outcome (its after backup): it is "
                              "finished first")
        if isinstance(plan, str) and self.rehearsed is not None:
            return Step(node, False, f"would migrate {db.name} between two verified backups of it: its rehearsal "
                                     f"lists {len(self.rehearsed)} migration(s): {', '.join(self.rehearsed) or 'none'} "
                                     f"(pending on {db.name} not checked: {plan})", tuple(details))
        if isinstance(plan, str):
            return Step(node, False, f"would migrate {db.name} between two verified backups of it, if anything is "
                                     f"pending (not checked: {plan})", tuple(details))
        names = ", ".join(plan[1]) or "none"
        return Step(node, False, f"would migrate {db.name} between two verified backups of it: {len(plan[1])} "
                                 f"pending migration(s): {names}", tuple(details))

    def guard_details(self, plan) -> list[str]:
        """The last rehearsal's figures and what the guard would say of them (rehearsal_guard.py), read only:
        a report the guard would set aside is only named here."""
        from .steps.migration.rehearsal import read_report_bytes
        from .steps.migration.rehearsal_guard import rehearsing_stage, witnesses
        from .steps.migration.rehearsal_report import other_rehearsal, refusal, stale, text_table, untrusted
        s, stage, rid = self.s, self.stage, self.rid
        rs = rehearsing_stage(self.config, stage)
        if rs is None:
            return []
        first = rs.primary
        data = s.hosts.one(first, lambda t: read_report_bytes(t, s.layout, rid))
        if data is None:
            return [f"the guard would refuse: {rid} has no rehearsal ({first}:{s.layout.rehearsal(rid)} is missing)"]
        report = json_or_none(data.decode(errors="replace"))
        if not isinstance(report, dict):
            return ["the guard would refuse: the rehearsal report is not a JSON object"]
        self.rehearsed = [str(m.get("name")) for m in report.get("migrations") or [] if isinstance(m, dict)]
        applied, pending = (None, None) if isinstance(plan, str) else plan
        problem = (other_rehearsal(report, rid, stage.database) or untrusted(data, witnesses(s, rs, rid))
                   or stale(report, rid, applied, pending))
        out = [text_table(report)]
        allow = s.environ.get("DEPLOY_ALLOW_UNSAFE", "")
        reason = problem or refusal(report, rid, applied, self.config.project.max_write_stall, allow, pending)
        if reason:
            out.append(f"the guard would refuse: {reason}")
        elif allow == rid and refusal(report, rid, applied, self.config.project.max_write_stall, "", pending):
            out.append(f"the guard would pass: its flags are accepted by DEPLOY_ALLOW_UNSAFE={rid}")
        else:
            out.append("the guard would pass" + (" (staleness not checked)" if applied is None else ""))
        return out


def plan_stage(s: Session, r: Releases, stage: Stage, chain: Sequence[str]) -> tuple[str, list[Step]]:
    """The title line and each node's step, in the chain's order (doit_tasks.chain)."""
    p = Planner(s, r, stage)
    if stage.promote_from:   # a chain without archive: the release live on promote_from
        try:
            p.promoted()
        except (StepError, CommandFailed, ConfigError) as exc:
            text = failed_text(exc)
            p.stop = text[len(stage.chain_task) + 2:] if text.startswith(f"{stage.chain_task}: ") else text
    steps = [_checked(p, node, *node.partition(":")[::2]) for node in chain]
    title = f"plan:{stage.name}: {stage.chain_task} with {p.rid or '?'}"
    if p.stop:
        title += f"\n  {stage.chain_task} would stop before its first node: {p.stop}"
    title += "".join(f"\n  {n}" for n in p.notes)
    return title, steps


def _checked(p: Planner, node: str, kind: str, name: str) -> Step:
    try:
        if kind == "archive":
            return p.archive(node)
        if p.stop:
            return Step(node, None, f"not checked: {p.stage.chain_task} would stop first")
        if p.rid is None:
            return Step(node, None, "not checked: the release is not known")
        if kind == "backup":
            return p.backup(node, p.config.databases[name])
        return getattr(p, kind)(node)
    except (StepError, CommandFailed, ConfigError) as exc:
        return Step(node, None, f"not checked: {failed_text(exc)}")


def show_plan(s: Session, r: Releases, stage: Stage, chain: Sequence[str]) -> int:
    title, steps = plan_stage(s, r, stage, chain)
    print(format_plan(title, steps), flush=True)
    return 0
