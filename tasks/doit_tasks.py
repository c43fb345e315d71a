"""The one module that imports doit's classes: each node kind as doit tasks, and doit's setup (reporter, dep
file); dodo.py holds the task_* creators. The run they serve (start.this_run: the config, the Session, the
Releases memo) is made before this module is imported. `doit list` opens no connection and takes no lock:
a command that runs tasks takes them at its first check or action."""
from __future__ import annotations

import os
import sys
import time

from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter

from . import commands, nodes, operate, plan, report
from .config import Config, ConfigError
from .errors import StepError
from .start import Run, command_after, initial_workdir, only_plans, runs_tasks, task_words, this_run
from .steps import hooks
from .transport import CommandFailed

# the operator commands (operate.py): no title line (a console's or a command's output is theirs alone)
OPERATORS = ("run:", "console:", "logs:", "plan:")
# `doit backup:prod --force`: a backup now, however young the newest is (a task parameter, so a forced
# backup is never taken by accident as part of deploy:test, where backup:prod is a dependency).
FORCE = {"name": "force", "long": "force", "type": bool, "default": False,
         "help": "take a backup now, even if the newest is younger than backup_max_age"}
UNLOCK_FORCE = {"name": "force", "long": "force", "type": bool, "default": False,
                "help": "remove the lock even when its run looks alive (this ends what it runs on the hosts)"}


class Reporter(ConsoleReporter):
    """A failed step is one line on stderr naming the task and what to do; tracebacks stay for bugs. It also
    notes each node's status and time, for DEPLOY_REPORT and GITHUB_STEP_SUMMARY (report.py), written when
    the run ends, however it ends (doit calls complete_run in a finally)."""

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.started = time.time()
        self.order: list[str] = []                      # the nodes the command runs, in doit's order
        self.nodes: dict[str, dict] = {}                # name -> {"status", "seconds"} (no status: under way)
        self._began: dict[str, float] = {}
        self.error: str | None = None

    def initialize(self, tasks, selected_tasks):
        self.order = report.run_order(tasks, selected_tasks)
        if self.order and runs_tasks(sys.argv):
            this_run().session.last_node = self.order[-1]

    def get_status(self, task):
        self._began.setdefault(task.name, time.monotonic())

    def execute_task(self, task):
        if _is_node(task):
            self.nodes.setdefault(task.name, {"status": None, "seconds": None})
        if not task.name.startswith(OPERATORS):   # an operator command's output is its own: no title line
            super().execute_task(task)

    def skip_uptodate(self, task):
        self._end(task, "up to date")
        super().skip_uptodate(task)

    def add_success(self, task):
        self._end(task, "ran")
        super().add_success(task)

    def add_failure(self, task, fail):
        self._end(task, "failed")
        self.error = self.error or error_line(task.name, fail)
        super().add_failure(task, fail)

    def _end(self, task, status: str) -> None:
        if not _is_node(task):   # a chain (deploy:test) or the hint: no work of its own
            return
        began = self._began.get(task.name)
        self.nodes[task.name] = {"status": status,
                                 "seconds": None if began is None else round(time.monotonic() - began, 3)}

    def _write_failure(self, result, write_exception=True):
        exc = result["exception"]
        if isinstance(exc, TaskFailed) and not exc.traceback:
            sys.stderr.write(f"ERROR: {error_line(result['task'].name, exc)}\n")
        else:
            super()._write_failure(result, write_exception)

    def complete_run(self):
        """The run's end: the on_success or on_failure hooks of the stages the command names, then doit's own."""
        run_outcome_hooks(self.failures, self.runtime_errors)
        self.failures = [f for f in self.failures if not isinstance(f["exception"], TaskFailed)]
        super().complete_run()
        if runs_tasks(sys.argv):
            write_report(this_run(), self)


def _is_node(task) -> bool:
    return bool(task.actions) and not task.name.startswith("_")


def error_line(name: str, fail) -> str:
    """The one line a failed node leaves (after `ERROR: `): its message, named by the node."""
    if isinstance(fail, TaskFailed) and not fail.traceback:
        msg = fail.message
        return msg if msg.startswith(name) else f"{name}: {msg}"
    tb = fail.traceback if isinstance(fail.traceback, list) else []
    lines = (tb[-1] if tb else fail.message or "failed").strip().splitlines() or ["failed"]
    return f"{name}: {fail.get_name()}: {lines[0]}"   # a bug: the exception's own line (the traceback is above)


def run_outcome_hooks(failures: list[dict], runtime_errors: list[str]) -> None:
    """on_success / on_failure once, after a command that runs tasks (DEPLOY_ERROR: the run's first error).
    doit reports the run's end from a `finally`: a run stopped by Ctrl-C or SIGTERM is still propagating."""
    if not runs_tasks(sys.argv):
        return
    error, stopped = "", sys.exc_info()[1]
    if isinstance(stopped, KeyboardInterrupt):
        error = "interrupted (Ctrl-C)"
    elif isinstance(stopped, SystemExit):
        error = f"stopped (exit {stopped.code})"
    elif stopped is not None:
        error = f"{type(stopped).__name__}: {stopped}".splitlines()[0]
    elif failures:
        name, exc = failures[0]["task"].name, failures[0]["exception"]
        msg = (exc.message if isinstance(exc, TaskFailed) else exc.get_msg()).strip().splitlines() or ["?"]
        error = msg[0] if msg[0].startswith(name) else f"{name}: {msg[0]}"
    elif runtime_errors:
        error = (runtime_errors[0].strip().splitlines() or ["?"])[0]
    run = this_run()
    hooks.run_outcome_hooks(run.session, run.releases, task_words(sys.argv), error)


def write_report(run: Run, rep: Reporter) -> None:
    """DEPLOY_REPORT and GITHUB_STEP_SUMMARY (report.py), at the end of a run that ran tasks."""
    if not ({"DEPLOY_REPORT", "GITHUB_STEP_SUMMARY"} & set(run.session.outputs)):
        return
    summary = report.summarize(run.config, run.session, run.releases, task_words(sys.argv), rep.order, rep.nodes,
                               rep.error, rep.started)
    rehearsals = [p.read_text() for p in run.session.rehearsal_reports if p.is_file()]
    for problem in report.emit(os.environ, initial_workdir(), summary, rehearsals):
        sys.stderr.write(f"ERROR: {problem}\n")


def doit_config() -> dict:
    """doit's dep file lives next to the stages.ini in use, in the sqlite3 backend (dbm here is dbm.dumb).
    The config is read here, when dodo.py is imported: a bad one stops before doit creates its dep file.
    A command of plan:<stage> tasks only keeps doit's memory in memory: a plan writes no file (doit would
    record the plan's success in the dep file, and make one where there is none)."""
    dep_file = str(this_run().config.path.parent / ".doit-stages.sqlite3")
    if only_plans(sys.argv):
        dep_file = ":memory:"
    return {"backend": "sqlite3", "dep_file": dep_file,
            "verbosity": 2, "reporter": Reporter, "default_tasks": ["_hint"]}


def _action(run: Run, fn, *args):
    def action():
        return _call(run, fn, *args)
    return action


def _call(run: Run, fn, *args, **options):
    try:
        run.session.hold_project_lock()
        summary = fn(run.session, run.releases, *args, **options)
    except (StepError, CommandFailed, ConfigError) as exc:   # ConfigError: a password not given
        return TaskFailed(str(exc))
    if summary:
        print(f"   {summary}" if isinstance(summary, str) else f"   {summary.get('file', summary)}")


def _unlock(run: Run, stage) -> dict:
    """unlock:<stage>, with `--force` (a task parameter) to remove the lock of a run that looks alive."""
    task = _node(run, f"unlock:{stage.name}", f"remove a stale lock from the {stage.name} hosts, saying whose "
                 "(--force: also a live run's)", commands.run_unlock, None, stage, command=True)

    def action(force=False):
        return _call(run, commands.run_unlock, stage, force=force)
    return {**task, "actions": [action], "params": [UNLOCK_FORCE]}


def _check(run: Run, fn, *args, kind: str = ""):
    def uptodate():
        try:
            if run.session.lock_checks:
                # locks before checks: a second run never reads another run's half-done state as done; what
                # the checks will read rides with the lock's take (nodes.check_reads)
                run.session.hold_project_lock()
                reads = nodes.check_reads(run.session, run.releases, kind, args[0]) if args else None
                run.session.lock_for_check(*args, reads=reads)
            return bool(fn(run.session, run.releases, *args))
        except (StepError, CommandFailed, ConfigError):  # "not done": the action runs and says what is wrong
            return False
    return uptodate


def _node(run: Run, name: str, doc: str, work, done, *args, command: bool = False) -> dict:
    """A node of the graph; a command (deploy:test, verify:test, ...) is a top-level task, so that `doit list`
    shows it; the other nodes are subtasks of their kind, shown by `doit list --all`."""
    task = {"doc": doc, "actions": [_action(run, work, *args)], "title": lambda t: t.name}
    if done is not None:
        task["uptodate"] = [_check(run, done, *args, kind=name.split(":", 1)[0])]
    return {**task, "basename": name} if command else {**task, "name": name.split(":", 1)[1]}


def chain(config: Config, stage) -> list[str]:
    """The nodes deploy:<stage> or promote:<stage> runs, in order."""
    names = [] if stage.promote_from else ["archive"]
    if stage.restore_from:
        names.append(f"backup:{stage.restore_from}")
    names += [f"upload:{stage.name}", f"build:{stage.name}"]
    if stage.restore_from:
        names.append(f"restore:{stage.name}")
    if config.migrates(stage):
        names.append(f"migrate:{stage.name}")
    return names + [f"switch:{stage.name}", f"verify:{stage.name}"]


def archive(run: Run) -> dict:
    return {"actions": [_action(run, nodes.run_archive)], "uptodate": [_check(run, nodes.archive_done)],
            "title": lambda t: t.name}


def per_stage(run: Run, kind: str, doc: str, work, done, only=None):
    for s in run.config.stages.values():
        if only is None or only(run.config, s):
            yield _after_hook(run, kind, s, _node(run, f"{kind}:{s.name}", doc.format(stage=s), work, done, s))


def _after_hook(run: Run, kind: str, stage, task: dict) -> dict:
    """A node with an after_<kind> hook is done only when, besides its real state, its after hook passed for
    this release: the action returns {after_<kind>: release}, which doit keeps only when the action succeeded.
    So a rerun after a failed after hook does the node (whose steps skip what is there) and the hook again.
    (after_switch runs inside the switch: a failure there puts the hosts back, so the switch is not done.)"""
    key = f"after_{kind}"
    if kind == "switch" or not stage.has_hook(key):
        return task
    act, check = task["actions"][0], task["uptodate"][0]

    def release() -> str | None:
        try:
            return run.releases.of(stage).id
        except (StepError, CommandFailed, ConfigError):
            return None

    def action():
        failed = act()
        return failed if failed is not None else {key: release()}

    def uptodate(task, values):
        return check() and release() is not None and values.get(key) == release()
    return {**task, "actions": [action], "uptodate": [uptodate]}


def commands_(run: Run):
    """deploy/promote (the chains), backup, restore, verify, rollback, unlock and rehearsal of each stage."""
    config = run.config
    for s in config.stages.values():
        what = f"promote the release of {s.promote_from}: " if s.promote_from else "deploy: "
        yield {"basename": s.chain_task, "actions": None, "task_dep": chain(config, s),
               "doc": what + " -> ".join(chain(config, s))}
    for db in config.databases.values():
        if db.backup_host:
            task = _node(run, f"backup:{db.name}", f"a verified backup of {db.name} (unless the newest is younger "
                         "than backup_max_age; --force: now)", nodes.run_backup, None, db, command=True)
            check = _check(run, nodes.backup_done, db, kind="backup")
            yield {**task, "params": [FORCE],
                   "uptodate": [lambda task, check=check: False if (task.options or {}).get("force") else check()]}
    for s in config.stages.values():
        if s.restore_from:
            yield _node(run, f"restore:{s.name}", f"database {s.database} := newest verified backup of "
                        f"{s.restore_from}", nodes.run_restore, nodes.restore_done, s, command=True)
        yield _node(run, f"verify:{s.name}", f"infra-tests against the {s.name} hosts", commands.run_verify,
                    None, s, command=True)
        yield _node(run, f"rollback:{s.name}", f"{s.name} back to its previous good release; the left one is "
                    "marked bad", commands.run_rollback, None, s, command=True)
        yield _unlock(run, s)
        if s.database:
            yield _node(run, f"rehearsal:{s.name}", f"the migration rehearsal report of the release {s.name} runs "
                        "(or would receive)", commands.run_rehearsal_report, None, s, command=True)


def status(run: Run) -> dict:
    def show():
        try:
            run.session.hold_project_lock()
        except StepError as exc:
            return TaskFailed(str(exc))
        print(commands.format_table(commands.status_rows(run.session)))
    return {"actions": [show], "uptodate": [False], "verbosity": 2}


def hint(run: Run) -> dict:
    first = [s.name for s in run.config.stages.values() if not s.promote_from]
    return {"actions": [lambda: print("doit-stages: `doit list` shows the commands, e.g. doit deploy:"
                                      + (first[0] if first else "<stage>"))], "verbosity": 2}


def _exit_status(run: Run, fn, *args):
    """An operator command's action: its exit status is doit's (the worst host's: doit alone knows only 0-3)."""
    try:
        code = fn(run.session, *args)
    except (StepError, CommandFailed, ConfigError) as exc:
        return TaskFailed(str(exc))
    if code:
        sys.stdout.flush()
        sys.exit(code)


def operators(run: Run):
    """run:<stage> CMD, console:<stage>, logs:<stage> (operate.py) and plan:<stage> (plan.py) of each stage: no
    lock, no password."""
    for s in run.config.stages.values():
        base = {"io": {"capture": False}, "verbosity": 2, "title": lambda t: t.name}

        def run_cmd(argv, s=s):   # argv (doit's pos_arg) lacks any word with '=': doit took it for a variable
            return _exit_status(run, operate.run_command, s, command_after(run.session.argv, f"run:{s.name}"))

        def console(s=s):
            return _exit_status(run, operate.open_console, s)

        def logs(s=s):
            return _exit_status(run, operate.follow_logs, s)
        yield {**base, "basename": f"run:{s.name}", "actions": [run_cmd], "pos_arg": "argv",
               "doc": f"doit run:{s.name} CMD ...: CMD in the live {s.name} release with its env, on its primary host "
                      "(DEPLOY_HOSTS=all or host,host: those), lines prefixed by host"}
        yield {**base, "basename": f"console:{s.name}", "actions": [console],
               "doc": f"console_command ({s.console_command or '-'}) in the live {s.name} release, on its primary host"}
        yield {**base, "basename": f"logs:{s.name}", "actions": [logs],
               "doc": f"follow log_command on every {s.name} host, lines prefixed by host, until Ctrl-C"}

        def show_plan(s=s):
            return _exit_status(run, plan.show_plan, run.releases, s, chain(run.config, s))
        yield {**base, "basename": f"plan:{s.name}", "actions": [show_plan],
               "doc": f"what {s.chain_task} would do now, node by node (up to date, or would ... and why); "
                      "writes nothing, takes no lock"}
