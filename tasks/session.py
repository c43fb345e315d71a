"""One doit run: its token, connections and executor, the host locks it holds, the project's local lock,
what it waits on (progress.Waits), and the signals it defers while a switch is under way.

A Session is made when doit loads the tasks and does nothing until a node asks it something, so `doit list`
opens no connection and takes no lock. Which release each stage gets is not here (releases.py).
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import math
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from .config import Config, Database, Host, Stage
from .errors import StepError
from .executor import Connections, Executor
from .layout import Layout
from .progress import Waits
from .remote_shell import through_proxy
from .runtime.common import stamp
from .runtime.known_links import KnownLinks
from .runtime.lock import holder_text, process_start, record_session, release_argv, release_lock, take_lock
from .transport import Cmd, Transport


class Session:
    def __init__(self, config: Config, environ=None, argv: list[str] | None = None):
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.argv = list(sys.argv if argv is None else argv)
        self.layout = Layout(config.project.deploy_root)
        self.token = secrets.token_hex(16)   # 32 hex digits, as uuid4().hex gave (uuid imports platform)
        # through a bastion, `parallel` logins at once (its MaxStartups); else every host's at once
        self.connections = Connections(config.project.ssh_config, on_connect=self._own,
                                       fast_kex=config.project.ssh_fast_kex,
                                       logins=config.project.parallel if through_proxy(config.project.ssh_config)
                                       else None)
        self.hosts = Executor(self.connections, config.project.parallel)
        self.known_links = KnownLinks()   # the links of the hosts this run holds, as it last saw them
        self.waits = Waits()   # what the run waits on now, per host (a reload, a health check)
        # stage -> the release it ran before this run's switch of it (None: none): hooks' DEPLOY_PREVIOUS
        self.switched_from: dict[str, str | None] = {}
        self.lock_checks = False  # set for commands that run tasks: their up-to-date checks lock first
        self.last_node: str | None = None   # the command's last node (doit_tasks.Reporter): let_go_with
        self.warm_imports: tuple[str, ...] = ()   # modules a later node needs, imported in the background
        # for CI (report.py, junit.py): the files the run writes, by variable (DEPLOY_REPORT, DEPLOY_JUNIT_XML,
        # GITHUB_STEP_SUMMARY; set by doit_tasks where doit was run), the verify results so far, the
        # Markdown rehearsal reports this machine wrote
        self.outputs: dict[str, Path] = {}
        self.verify_suites: list = []
        self.rehearsal_reports: list[Path] = []
        self._locked: list[Host] = []
        self._project_lock = None
        self._mutex = threading.Lock()
        atexit.register(self.connections.close_all, wait=False)  # registered first: runs after unlock_all

    def backup_host(self, db: Database) -> Host:
        if db.backup_host is None:
            raise StepError(f"[database:{db.name}] has no backup_host and no stage uses it; set backup_host =")
        return db.backup_host

    def batches(self, stage: Stage) -> list[list[Host]]:
        """The switch's batches: each role's hosts cut by its batch, the n-th batch of every role together."""
        cuts = [_cut(role.hosts, role.batch) for role in stage.roles]
        return [[h for cut in cuts if i < len(cut) for h in cut[i]] for i in range(max(map(len, cuts)))]

    # -- the project's local lock ----------------------------------------------------------------------
    def hold_project_lock(self) -> None:
        """doit never locks its dep file: one run per project at a time, from this run's first check or
        action to its end (flock is released by the kernel however the process ends)."""
        if self._project_lock is not None:
            return
        workdir = self.config.path.parent
        f = open(workdir / ".doit-stages.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise StepError(f"another doit run uses {workdir} ({holder}); wait for it to finish") from None
        f.truncate(0)
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        self._project_lock = f
        if self.warm_imports:   # from the first node on, the run mostly waits on hosts: import meanwhile
            threading.Thread(target=_import_all, args=(self.warm_imports,), daemon=True).start()

    # -- host locks ------------------------------------------------------------------------------------
    def lock(self, hosts, what: str, reads=None) -> None:
        """Take .deploy/lock on every host not yet locked by this run; released when the process ends.
        reads: a function of a host's Transport giving [(key, Cmd)] of read-only commands sent in the same
        exchange as the take: their answers are kept for the checks that ask them (Transport.keep)."""
        self.hold_project_lock()
        with self._mutex:
            todo = [h for h in dict.fromkeys(hosts) if h not in self._locked]
        if not todo:
            return
        command = " ".join(a for a in self.argv[1:] if not a.startswith("-") and "/" not in a)
        info = {**stamp(), "pid": os.getpid(), "what": f"doit {command}", "token": self.token}
        start = process_start(os.getpid())
        if start is not None:   # a reused pid is never taken for this run (runtime/lock.py alive_here)
            info["pid_start"] = start
        results = self.hosts.outcomes(todo, lambda t: self._take(t, info, reads), wide=True)
        for note in (r for r in results if isinstance(r, str)):  # a dead run's lock broken: what of its work
            print(note, flush=True)
        taken = [h for h, r in zip(todo, results) if r is None or isinstance(r, str)]
        results = [None if isinstance(r, str) else r for r in results]
        with self._mutex:
            if not self._locked and taken:
                atexit.register(self.unlock_all)
                _exit_on_sigterm()
            self._locked += taken
        refused = [(h, r) for h, r in zip(todo, results) if r is not None]
        # a CommandFailed (and most StepErrors) already start with the host
        broken = [str(r) if str(r).startswith(f"{h}: ") else f"{h}: {r}" for h, r in refused
                  if isinstance(r, Exception)]
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

    def _take(self, t: Transport, info: dict, reads=None):
        t.held = True    # for the reads sent with the take: kept only if the take succeeds (take_lock)
        try:
            result = take_lock(t, self.layout, info, say=lambda text: print(text, flush=True),
                               reads=reads(t) if reads is not None else ())
        except BaseException:
            t.held = False
            t.forget()
            raise
        if result is None or isinstance(result, str):
            t.on_session = lambda watched: record_session(t, self.layout, self.token, watched.line())
            self.known_links.hold(t.host)   # no other run moves the host's links now: what this run reads holds
        else:
            t.held = False
            t.forget()
        return result

    def _own(self, host: Host, t: Transport) -> None:
        """A new connection to a host this run holds (after the old one was lost): its lock records it."""
        with self._mutex:
            held = host in self._locked
        line = t.session_word() if held else ""   # "-": the session shell's own, not waited for
        if line:
            record_session(t, self.layout, self.token, line)
            t.on_session = lambda watched: record_session(t, self.layout, self.token, watched.line())
            self.known_links.hold(host)
            t.held = True

    def unlock_stage(self, hosts: list[Host], what: str) -> str:
        """The stage whose `doit unlock:<stage>` covers these hosts (its hosts and its database's backup
        host): the one the command line names if it does, else the first that does."""
        def covers(st: Stage) -> bool:
            db = self.config.stage_database(st)
            return set(hosts) <= {*st.hosts, *([db.backup_host] if db and db.backup_host else [])}
        named = [w.partition(":")[2] for w in [*self.argv[1:], what] if ":" in w]
        stages = [self.config.stages[n] for n in named if n in self.config.stages] + list(self.config.stages.values())
        return next((st.name for st in stages if covers(st)), "<stage>")

    def lock_for_check(self, subject: Stage | Database | None = None, reads=None) -> None:
        """Before a node's up-to-date check reads a stage's state, hold that stage's hosts (and its
        database's backup host), so a check never reads another run's half-done work as done. reads: what
        the check will ask a host (lock())."""
        if not self.lock_checks or subject is None:
            return
        if isinstance(subject, Database):
            self.lock([self.backup_host(subject)], f"backup:{subject.name}", reads)
            return
        db = self.config.stage_database(subject)
        extra = [db.backup_host] if db and db.backup_host else []
        self.lock([*subject.hosts, *extra], f"check:{subject.name}", reads)

    def forget_reads(self) -> None:
        """Every host's kept answers dropped (Transport.keep): a hook ran, which may have changed a host by
        another way than this run's session (a `local:` hook's own ssh)."""
        for t in self.connections.open_transports():
            t.forget()

    def unlock_all(self) -> None:
        with self._mutex:
            hosts, self._locked = self._locked, []
        if hosts:
            self.hosts.outcomes(hosts, lambda t: self._release(t), wide=True)

    def let_go_with(self, t: Transport, argv: list[str]) -> tuple[int, str, str]:
        """argv, then this run's lock on the host released in the same exchange: for the last command the
        run sends there (verify's record, when verify is the command's last node), so that the release at
        the run's end costs no round trip of its own. Nothing is sent to the host after it but what locks
        again (an on_success hook on hosts). When the host did not answer, the lock stays this run's, and
        the run's end releases it as usual."""
        with self._mutex:
            held = t.host in self._locked
            if held:
                self._locked.remove(t.host)
        if not held:
            return t.call(argv)
        self.known_links.drop(t.host)   # another run may move the links once the lock is gone
        t.held = False
        done, released = t.batch([Cmd(argv), Cmd(release_argv(self.layout, self.token))])
        if released[0] != 0:
            with self._mutex:
                self._locked.append(t.host)
        return done

    def _release(self, t: Transport) -> None:
        self.known_links.drop(t.host)   # another run may move the links once the lock is gone
        t.held = False
        release_lock(t, self.layout, self.token)

    # -- signals ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def deferred_signals(self, what: str):
        """SIGINT and SIGTERM wait while a switch is under way: the caller asks `interrupted()` (how many
        came) between batches and finishes or undoes the switch on every host before the run stops. The
        first names what the run waits on; a second (and any later) stops the waits that can be stopped
        (a reload, as its reload_timeout would: it fails, and the switch is undone)."""
        got: list[int] = []
        if threading.current_thread() is not threading.main_thread():
            yield lambda: 0
            return

        def on_signal(signum, _frame):
            got.append(signum)
            if len(got) == 1:
                waits = self.waits.text()
                say(f"{what}: interrupted; " + (f"waiting on {waits}; " if waits else "") +
                    "the switch is finished or undone on every host before the run stops; Ctrl-C again stops "
                    "waiting on a reload (it then counts as failed: every host goes back)")
                return
            stopped = [w for w in self.waits.current() if w.stop is not None]
            if stopped:
                say(f"{what}: stopped waiting on {self.waits.text(stopped)}: it counts as failed, every host goes "
                    "back on the release it ran")
            for w in stopped:
                w.stop()
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in old:
            signal.signal(sig, on_signal)
        try:
            yield lambda: len(got)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        if got:
            raise StepError("interrupted by a signal after the switch was finished on every host and logged "
                            "(not undone); the stage runs the new release")


def say(text: str) -> None:
    """One line on stderr, from a signal handler: if the handler interrupted a write to stderr (a reentrant
    write raises), a thread writes it once that write is done."""
    try:
        print(text, file=sys.stderr, flush=True)
    except RuntimeError:
        threading.Thread(target=print, args=(text,), kwargs={"file": sys.stderr, "flush": True}).start()


def _import_all(names) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:   # the node that needs it imports it again and says what is wrong
            continue


def _exit_on_sigterm():
    """A killed deployer (SIGTERM, as CI does on cancel) still runs atexit, so its locks are released."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _cut(hosts, batch: str) -> list[list[Host]]:
    n = len(hosts)
    size = math.ceil(n * int(batch[:-1]) / 100) if batch.endswith("%") else int(batch)
    size = max(1, min(n, size))
    return [list(hosts[i:i + size]) for i in range(0, n, size)]
