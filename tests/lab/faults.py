"""The fault matrix's lab (tests/integration/test_fault_matrix.py): one project on the session's two sshd
hosts, all three stages on both hosts (links sites/test, sites/staging, sites/current), production's
backups on web2 (so a restore copies a dump through .deploy/incoming/), a reload_command that records each
reload and a health URL served by this process. A cell runs a command with one failpoint armed for one fault kind:

    kill    DEPLOY_FAILPOINTS='<point>=kill'    the deployer is SIGKILLed right there
    raise   DEPLOY_FAILPOINTS='<point>=raise'   the step fails right there
    host    DEPLOY_FAILPOINTS='<point>=pause'   the deployer stops there; the victim host goes down (its sshd
                                                and every process in it killed); the deployer goes on; the
                                                host is started again before the next run

Points a host passes are armed for the victim only (`@<host url>`), so the others go on as usual.

The cells of a live switch (issue #16) act from beside the run instead:

    unlock    the run paused at a switch failpoint; a second checkout runs `doit unlock:<stage>` (refused:
              the run is alive), then the run goes on
    force     likewise with `doit unlock:<stage> --force` (the lock removed, the run's sessions ended)
    sessions  every host's reload held on a file (hold-<stage>) until the victim is in its reload; then
              every session on the victim is killed (the host stays up) and the reloads are let go
"""
from __future__ import annotations

import copy
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from doit_stages import failpoints
from doit_stages.layout import release_id

from .deployer import end, go_on, start_doit, wait_paused
from .health import HealthServer
from .stages_ini import stages_ini

STAGE_LINK = {"test": "sites/test", "staging": "sites/staging", "prod": "sites/current"}
# records each reload once it is done; says when it starts, and waits while the test holds it (hold-<stage>)
RELOAD = ("reload_command = sh -c 'touch /srv/blog/shared/reloading-$STAGE; "
          "while [ -e /srv/blog/shared/hold-$STAGE ]; do sleep 0.05; done; "
          "echo \"$STAGE $PWD\" >> /srv/blog/shared/reloads-$STAGE'\n")
# a new table for production: a safe migration (the rehearsal flags nothing), seen in the backups' tables
TAG_MIGRATION = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("posts", "0003_populate_post_slug")]
    operations = [migrations.CreateModel("Tag", [("id", models.BigAutoField(primary_key=True)),
                                                 ("name", models.CharField(max_length=40))])]
'''


@dataclass(frozen=True)
class Cell:
    command: str      # deploy:test | promote:staging | promote:prod
    point: str        # a failpoint on the command's path ("reload" for the sessions kind)
    kind: str         # kill | raise | host | unlock | force | sessions
    hosted: bool      # the point is passed once per host (it can be armed for one host)
    victim: int       # index of the host that the fault hits (armed @host, or the host that goes down)

    @property
    def stage(self) -> str:
        return self.command.split(":")[1]

    @property
    def id(self) -> str:
        return f"{self.command}/{self.point}/{self.kind}"


def rid(link: str | None) -> str | None:
    return link.rsplit("/", 1)[-1] if link else None


class Lab:
    def __init__(self, world: dict, tmp: Path):
        self.p, self.hosts, self.db, self.repo = world["project"], world["hosts"], world["mariadb"], world["repo"]
        self.prod, self.tmp = world["prod"], tmp
        self.health = HealthServer()
        # a small app: no build_command (collectstatic would start Django on every host at every build)
        self.p.template = stages_ini({"project": {"build_command": None}})
        self.p.write(project_extra=RELOAD + f"health_url = http://{{host}}:{self.health.port}/health/\n"
                                            "health_timeout = 10s\n",
                     prod_extra=f"backup_host = {self.hosts[1].url}\n")
        self.second = copy.copy(self.p)     # a second checkout: its own directory (and flock), the same hosts
        self.second.workdir = tmp / "second"
        self.second.workdir.mkdir()
        self.second.ini = self.second.workdir / "stages.ini"
        self.second.ini.write_text(self.p.ini.read_text())
        self.traced: dict[str, list[tuple[str, str]]] = {}
        self.migrating: str | None = None   # the release with a new migration that promote:staging cells ship
        self.snapshot: Path | None = None    # production's dump from before that migration

    # -- state ------------------------------------------------------------------------------------
    def links(self, stage: str) -> list[str | None]:
        return [rid(x) for x in self.p.links(STAGE_LINK[stage])]

    def live(self, stage: str) -> str | None:
        """The release every host of the stage runs, or None when they differ or one has none."""
        links = set(self.links(stage))
        return links.pop() if len(links) == 1 else None

    def head_release(self) -> str:
        out = self.repo._run("git", "log", "-1", "--format=%H %ct").split()
        return release_id("blog", int(out[1]), out[0])

    # -- commands ---------------------------------------------------------------------------------
    def traced_run(self, command: str) -> None:
        """A plain run that records every failpoint it passes (the command's path)."""
        trace = self.tmp / f"trace-{command.replace(':', '-')}"
        trace.unlink(missing_ok=True)
        self.p.ok(command, env={failpoints.TRACE_ENV: str(trace)})
        lines = [ln.split("\t") for ln in trace.read_text().splitlines()]
        self.traced[command] = [(name, host) for name, host in lines]

    def commit(self, tag: str, files: dict | None = None) -> str:
        self.repo.commit(tag, {"static/version.txt": tag + "\n", **(files or {})})
        return self.head_release()

    def arm(self, cell: Cell, action: str) -> dict:
        only = f"@{self.hosts[cell.victim].url}" if cell.hosted else ""
        return {failpoints.ENV: f"{cell.point}={action}{only}"}

    def run_faulty(self, cell: Cell) -> subprocess.CompletedProcess:
        if cell.kind != "host":
            return self.p.doit(cell.command, env=self.arm(cell, cell.kind))
        victim = self.hosts[cell.victim]
        proc = start_doit(self.p, cell.command, env=self.arm(cell, "pause"))
        try:
            paused = wait_paused(proc)
            if paused:
                victim.kill()
                go_on(proc)
            out, err = proc.communicate(timeout=600)
        finally:
            end(proc)
            victim.start()
        if not paused:
            err = f"(the run ended before it reached {cell.point}: no host went down)\n{err}"
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def run_beside(self, cell: Cell) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess | None]:
        """A live-switch cell: the run, and what the second checkout's unlock said (None for sessions)."""
        if cell.kind == "sessions":
            return self._sessions_killed(cell), None
        proc = start_doit(self.p, cell.command, env=self.arm(cell, "pause"))
        unlock = None
        try:
            if wait_paused(proc):
                unlock = self.second.doit(f"unlock:{cell.stage}", *(["--force"] if cell.kind == "force" else []))
                go_on(proc)
            out, err = proc.communicate(timeout=600)
        finally:
            end(proc)
        if unlock is None:
            err = f"(the run ended before it reached {cell.point}: nothing was unlocked)\n{err}"
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        done.pid = proc.pid     # the holder the unlock must name
        return done, unlock

    def _sessions_killed(self, cell: Cell) -> subprocess.CompletedProcess:
        victim, stage = self.hosts[cell.victim], cell.stage
        for h in self.hosts:
            h.path(f"/srv/blog/shared/reloading-{stage}").unlink(missing_ok=True)
            h.write_file(f"/srv/blog/shared/hold-{stage}", "")
        proc = start_doit(self.p, cell.command)
        killed = False
        try:
            started = victim.path(f"/srv/blog/shared/reloading-{stage}")
            deadline = time.monotonic() + 300      # the reload stays held on hold-<stage>: a state that lasts
            while proc.poll() is None and not started.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            if started.exists() and proc.poll() is None:
                victim.kill_sessions()
                killed = True
            for h in self.hosts:
                h.path(f"/srv/blog/shared/hold-{stage}").unlink(missing_ok=True)
            out, err = proc.communicate(timeout=600)
        finally:
            for h in self.hosts:
                h.path(f"/srv/blog/shared/hold-{stage}").unlink(missing_ok=True)
            end(proc)
        if not killed:
            err = f"(the run never reached the reload on {victim.name}: no session was killed)\n{err}"
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # -- production's database, for the promote:staging cells ----------------------------------------
    def save_prod(self) -> None:
        self.snapshot = self.tmp / "prod-before-migration.sql"
        with open(self.snapshot, "wb") as f:
            subprocess.run(["mysqldump", "-h", "127.0.0.1", "-u", "root", "--single-transaction", "--routines",
                            "--triggers", "--", self.prod], stdout=f, check=True)

    def reset_prod(self) -> None:
        """Production as it was before the migration under test (so the cell's run migrates it again)."""
        self.db.create_database(self.prod, replace=True)
        with open(self.snapshot, "rb") as f:
            subprocess.run(["mariadb", "-h", "127.0.0.1", "-u", "root", "--", self.prod], stdin=f, check=True)
