"""The state of one doit run: the config, which release each stage is getting, and the host locks held.

A Plan is made by the task creators and does nothing until a node asks it something, so `doit list` opens
no connection. It is the only place where values found by one node are remembered for the next.
"""
from __future__ import annotations

import atexit
import contextlib
import getpass
import math
import os
import signal
import socket
import sys
import threading
import uuid
from datetime import datetime, timezone

from .config import Config, Database, Host, Stage
from .layout import Layout, release_id
from .steps.archive import Release, Revision, local_release, make_archive, resolve_revision
from .steps.buildout import configs_of
from .steps.common import StepError, on_hosts, run_on_hosts
from .steps.lock import holder_text, release_lock, take_lock
from .steps.switch import read_link, release_of
from .steps.upload import fetch_release
from .steps.verify import read_verify
from .transport import CommandFailed, Connections


class Plan:
    def __init__(self, config: Config, environ=None):
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.layout = Layout(config.project.deploy_root)
        self.token = uuid.uuid4().hex
        self._revision: Revision | None = None
        self._releases: dict[str, Release] = {}
        self._locked: list[Host] = []
        self._mutex = threading.Lock()
        self.connections = Connections(config.project.ssh_config)
        self.lock_checks = False  # set for commands that run tasks: their up-to-date checks lock first
        atexit.register(self.connections.close_all)  # registered first, so it runs after unlock_all

    # -- hosts -------------------------------------------------------------------------------------
    def on_hosts(self, hosts, fn, what, progress=None):
        return on_hosts(self.connections, self.config.project.parallel, hosts, fn, what, progress)

    def run_on_hosts(self, hosts, fn, progress=None):
        return run_on_hosts(self.connections, self.config.project.parallel, hosts, fn, progress)

    def on_host(self, host: Host, fn):
        try:
            return fn(self.connections.get(host))
        except CommandFailed as exc:
            if exc.unreachable:
                self.connections.drop(host)
            raise

    def backup_host(self, db: Database) -> Host:
        if db.backup_host is None:
            raise StepError(f"[database:{db.name}] has no backup_host and no stage uses it; set backup_host =")
        return db.backup_host

    def batches(self, stage: Stage) -> list[list[Host]]:
        n = len(stage.hosts)
        size = math.ceil(n * int(stage.batch[:-1]) / 100) if stage.batch.endswith("%") else int(stage.batch)
        size = max(1, min(n, size))
        return [list(stage.hosts[i:i + size]) for i in range(0, n, size)]

    # -- releases ----------------------------------------------------------------------------------
    def revision(self) -> Revision:
        if self._revision is None:
            wanted = self.environ.get("DEPLOY_REVISION") or self.config.project.revision
            self._revision = resolve_revision(self.config.project, wanted)
        return self._revision

    def source_release_id(self) -> str:
        rev = self.revision()
        return release_id(self.config.project.name, rev.time, rev.commit)

    def built_release(self) -> Release | None:
        return local_release(self.config.build_dir, self.source_release_id())

    def make_archive(self) -> Release:
        release = make_archive(self.config.project, self.revision(), self.config.build_dir, configs_of(self.config))
        self._releases.clear()
        return release

    def release(self, stage: Stage) -> Release:
        """What `stage` is getting in this run: the source revision for a first stage; for a promoted
        one, exactly the release live on its promote_from stage (never rebuilt from source)."""
        with self._mutex:
            if stage.name not in self._releases:
                self._releases[stage.name] = self._find_release(stage)
            return self._releases[stage.name]

    def _find_release(self, stage: Stage) -> Release:
        if not stage.promote_from:
            return self.built_release() or self.make_archive()
        src = self.config.stages[stage.promote_from]
        rid = self.live_release(src, f"promote:{stage.name}")
        states = self.on_hosts(src.hosts, lambda t: read_verify(t, self.layout, src.name),
                               f"promote:{stage.name}: reading verify:{src.name}")
        for host, state in zip(src.hosts, states):
            if not state or state.get("release") != rid or not state.get("ok"):
                raise StepError(f"promote:{stage.name}: release {rid} has not passed verify:{src.name} on "
                                f"{host}; run doit verify:{src.name} (and fix what it reports) first")
        return local_release(self.config.build_dir, rid) or self.on_host(
            src.hosts[0], lambda t: fetch_release(t, self.layout, rid, self.config.build_dir))

    def live_release(self, stage: Stage, what: str) -> str:
        """The release behind the stage's link; all its hosts must agree."""
        targets = self.on_hosts(stage.hosts, lambda t: read_link(t, self.layout, stage.link),
                                f"{what}: reading {stage.link}")
        rids = [release_of(x) for x in targets]
        missing = [str(h) for h, r in zip(stage.hosts, rids) if r is None]
        if missing:
            raise StepError(f"{what}: stage {stage.name} has no release on {', '.join(missing)} "
                            f"({stage.link} is missing); run its deploy or promote first")
        if len(set(rids)) > 1:
            detail = ", ".join(f"{h}={r}" for h, r in zip(stage.hosts, rids))
            raise StepError(f"{what}: the hosts of stage {stage.name} disagree ({detail}); "
                            f"rerun the deploy or promote of {stage.name} first")
        return rids[0]

    # -- locks -------------------------------------------------------------------------------------
    def lock(self, hosts, what: str) -> None:
        """Take .deploy/lock on every host not yet locked by this run; released when the process ends."""
        with self._mutex:
            todo = [h for h in dict.fromkeys(hosts) if h not in self._locked]
        if not todo:
            return
        command = " ".join(a for a in sys.argv[1:] if not a.startswith("-") and "/" not in a)
        info = {"user": getpass.getuser(), "machine": socket.gethostname(), "pid": os.getpid(),
                "what": f"doit {command}", "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "token": self.token}
        results = self.run_on_hosts(todo, lambda t: take_lock(t, self.layout, info))
        taken = [h for h, r in zip(todo, results) if r is None]
        with self._mutex:
            if not self._locked and taken:
                atexit.register(self.unlock_all)
                _exit_on_sigterm()
            self._locked += taken
        refused = [(h, r) for h, r in zip(todo, results) if r is not None]
        broken = [f"{h}: {r}" for h, r in refused if isinstance(r, Exception)]
        if broken:  # every host, not only the first
            raise StepError(f"{what}: cannot take the lock on {len(broken)} host(s): {'; '.join(broken)}")
        if refused:
            by: dict[str, list[str]] = {}
            for h, r in refused:  # the same run usually holds them all: name it once
                by.setdefault(holder_text(r), []).append(str(h))
            held = "; ".join(f"{'each of ' if len(hs) > 1 else ''}{', '.join(hs)} is locked by {holder}"
                             for holder, hs in by.items())
            stage = self.unlock_stage([h for h, _ in refused], what)
            raise StepError(f"{what}: {held}; wait for that run, or if it is dead, doit unlock:{stage} removes "
                            "the lock")

    def unlock_stage(self, hosts: list[Host], what: str) -> str:
        """The stage whose `doit unlock:<stage>` covers these hosts (its hosts and its database's backup
        host): the one the command line names if it does, else the first that does."""
        def covers(st: Stage) -> bool:
            db = self.config.stage_database(st)
            return set(hosts) <= {*st.hosts, *([db.backup_host] if db and db.backup_host else [])}
        named = [w.partition(":")[2] for w in [*sys.argv[1:], what] if ":" in w]
        stages = [self.config.stages[n] for n in named if n in self.config.stages] + list(self.config.stages.values())
        return next((st.name for st in stages if covers(st)), "<stage>")

    @contextlib.contextmanager
    def deferred_signals(self):
        """SIGINT and SIGTERM wait while a switch is under way: the caller asks `interrupted()` between
        batches and finishes or undoes the switch on every host before the run stops."""
        got: list[int] = []
        if threading.current_thread() is not threading.main_thread():
            yield lambda: False
            return
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in old:
            signal.signal(sig, lambda signum, _frame: got.append(signum))
        try:
            yield lambda: bool(got)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        if got:
            raise StepError("interrupted by a signal after the switch was finished on every host and logged "
                            "(not undone); the stage runs the new release")

    def lock_for_check(self, subject: Stage | Database | None = None) -> None:
        """Before a node's up-to-date check reads a stage's state, hold that stage's hosts (and its
        database's backup host), so a check never reads another run's half-done work as done."""
        if not self.lock_checks or subject is None:
            return
        if isinstance(subject, Database):
            self.lock([self.backup_host(subject)], f"backup:{subject.name}")
            return
        db = self.config.stage_database(subject)
        extra = [db.backup_host] if db and db.backup_host else []
        self.lock([*subject.hosts, *extra], f"check:{subject.name}")

    def unlock_all(self) -> None:
        with self._mutex:
            hosts, self._locked = self._locked, []
        if hosts:
            self.run_on_hosts(hosts, lambda t: release_lock(t, self.layout, self.token))


def _exit_on_sigterm():
    """A killed deployer (SIGTERM, as CI does on cancel) still runs atexit, so its locks are released."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
