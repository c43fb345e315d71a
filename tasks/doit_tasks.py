"""task_* creators: the one module that imports doit. Creators only describe tasks; they open nothing.

`creators(config)` returns the task_* functions bound to one Plan (the run's state), for dodo.py to expose.
"""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter

from . import commands, nodes
from .config import Config, ConfigError, config_path, load_config
from .plan import Plan
from .steps.common import StepError
from .transport import CommandFailed


class Reporter(ConsoleReporter):
    """A failed step is one line on stderr naming the task and what to do; tracebacks stay for bugs."""

    def _write_failure(self, result, write_exception=True):
        exc = result["exception"]
        if isinstance(exc, TaskFailed) and not exc.traceback:
            name, msg = result["task"].name, exc.message
            sys.stderr.write(f"ERROR: {msg}\n" if msg.startswith(name) else f"ERROR: {name}: {msg}\n")
        else:
            super()._write_failure(result, write_exception)

    def complete_run(self):
        self.failures = [f for f in self.failures if not isinstance(f["exception"], TaskFailed)]
        super().complete_run()


def ini_path() -> Path:
    """The stages.ini in use; relative to where the user ran doit (doit itself moves to dodo.py's dir)."""
    from doit import get_initial_workdir
    return config_path(base=get_initial_workdir())


def doit_config(path: Path) -> dict:
    """doit's dep file lives next to the stages.ini in use, in the sqlite3 backend (dbm here is dbm.dumb)."""
    workdir = path.parent
    return {"backend": "sqlite3", "dep_file": str(workdir / ".doit-stages.sqlite3"), "verbosity": 2,
            "reporter": Reporter, "default_tasks": ["_hint"]}


def hold_project_lock(path: Path):
    """doit never locks its dep file: one run per project at a time, for the whole run (flock is released
    by the kernel however the process ends). Returns the open file, which must stay referenced."""
    workdir = path.parent
    f = open(workdir / ".doit-stages.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        sys.exit(f"ERROR: another doit run uses {workdir} ({holder}); wait for it to finish")
    f.truncate(0)
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def load_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        sys.exit(f"ERROR: {exc}")


def _action(plan: Plan, fn, *args):
    def action():
        try:
            summary = fn(plan, *args)
        except (StepError, CommandFailed) as exc:
            return TaskFailed(str(exc))
        if summary:
            print(f"   {summary}" if isinstance(summary, str) else f"   {summary.get('file', summary)}")
    return action


def _check(plan: Plan, fn, *args):
    def uptodate():
        try:
            # locks before checks: a second run never reads another run's half-done state as done
            plan.lock_for_check(*args)
            return bool(fn(plan, *args))
        except (StepError, CommandFailed):  # doit turns an exception into a traceback and exit 3: "not done"
            return False
    return uptodate


# `doit backup:prod --force`: a backup now, however young the newest is (a task parameter, so a forced
# backup is never taken by accident as part of deploy:test, where backup:prod is a dependency).
FORCE = {"name": "force", "long": "force", "type": bool, "default": False,
         "help": "take a backup now, even if the newest is younger than backup_max_age"}


def _unless_forced(check):
    def uptodate(task):
        return False if (task.options or {}).get("force") else check()
    return uptodate


def creators(config: Config) -> dict:
    plan = Plan(config)
    plan.lock_checks = runs_tasks(sys.argv)
    stages = config.stages
    first = [s for s in stages.values() if not s.promote_from]
    promoted = [s for s in stages.values() if s.promote_from]

    def node(name, doc, run, done, *args, command=False):
        """A node of the graph; a command (deploy:test, verify:test, ...) is a top-level task, so that
        `doit list` shows it; the other nodes are subtasks, shown by `doit list --all`."""
        task = {"doc": doc, "actions": [_action(plan, run, *args)], "title": lambda t: t.name}
        if done is not None:
            task["uptodate"] = [_check(plan, done, *args)]
        return {**task, "basename": name} if command else {**task, "name": name.split(":", 1)[1]}

    def migrates(stage):
        src = stages.get(stage.promote_from) if stage.promote_from else None
        return bool(stage.database) and (src is None or src.database != stage.database)

    def chain(stage):
        names = [] if stage.promote_from else ["archive"]
        if stage.restore_from:
            names.append(f"backup:{stage.restore_from}")
        names += [f"upload:{stage.name}", f"build:{stage.name}"]
        if stage.restore_from:
            names.append(f"restore:{stage.name}")
        if migrates(stage):
            names.append(f"migrate:{stage.name}")
        return names + [f"switch:{stage.name}", f"verify:{stage.name}"]

    def task_archive():
        """build/<id>.tar.gz from the revision (DEPLOY_REVISION, [project] revision or the head)."""
        return {"actions": [_action(plan, nodes.run_archive)], "uptodate": [_check(plan, nodes.archive_done)],
                "title": lambda t: t.name}

    def task_upload():
        """upload:<stage>: the release's archive on every host of the stage, sha256 checked."""
        for s in stages.values():
            yield node(f"upload:{s.name}", f"archive on every {s.name} host", nodes.run_upload, nodes.upload_done, s)

    def task_build():
        """build:<stage>: releases/<id> unpacked, built and marked ready on every host of the stage."""
        for s in stages.values():
            yield node(f"build:{s.name}", f"release built on every {s.name} host", nodes.run_build,
                       nodes.build_done, s)

    def task_migrate():
        """migrate:<stage>: the release's migrations on the stage's database (backed up around it)."""
        for s in filter(migrates, stages.values()):
            yield node(f"migrate:{s.name}", f"migrations on database {s.database}", nodes.run_migrate,
                       nodes.migrate_done, s)

    def task_switch():
        """switch:<stage>: the stage's link to the release, by rename, on all hosts or none."""
        for s in stages.values():
            yield node(f"switch:{s.name}", f"{s.link} -> the release on every {s.name} host", nodes.run_switch,
                       nodes.switch_done, s)

    def task_commands():
        for s in first:
            yield {"basename": f"deploy:{s.name}", "actions": None, "task_dep": chain(s),
                   "doc": "deploy: " + " -> ".join(chain(s))}
        for s in promoted:
            yield {"basename": f"promote:{s.name}", "actions": None, "task_dep": chain(s),
                   "doc": f"promote the release of {s.promote_from}: " + " -> ".join(chain(s))}
        for db in config.databases.values():
            if db.backup_host:
                task = node(f"backup:{db.name}", f"a verified backup of {db.name} (unless the newest is younger "
                            "than backup_max_age; --force: now)", nodes.run_backup, None, db, command=True)
                yield {**task, "uptodate": [_unless_forced(_check(plan, nodes.backup_done, db))], "params": [FORCE]}
        for s in stages.values():
            if s.restore_from:
                yield node(f"restore:{s.name}", f"database {s.database} := newest verified backup of "
                           f"{s.restore_from}", nodes.run_restore, nodes.restore_done, s, command=True)
            yield node(f"verify:{s.name}", f"infra-tests against the {s.name} hosts", commands.run_verify,
                       None, s, command=True)
            yield node(f"rollback:{s.name}", f"{s.name} back to its previous good release; the left one is "
                       "marked bad", commands.run_rollback, None, s, command=True)
            yield node(f"unlock:{s.name}", f"remove a stale lock from the {s.name} hosts, saying whose",
                       commands.run_unlock, None, s, command=True)
            if s.database:
                yield node(f"rehearsal:{s.name}", f"the migration rehearsal report of the release {s.name} runs "
                           "(or would receive)", commands.run_rehearsal_report, None, s, command=True)

    def task_status():
        """a table: stage, release, revision, when, by whom, hosts in agreement or not."""
        def show():
            print(commands.format_table(commands.status_rows(plan)))
        return {"actions": [show], "uptodate": [False], "verbosity": 2}

    def task__hint():
        """(default) say how to begin."""
        return {"actions": [lambda: print("doit-stages: `doit list` shows the commands, e.g. doit deploy:"
                                          + (first[0].name if first else "<stage>"))], "verbosity": 2}

    return {k: v for k, v in locals().items() if k.startswith("task_")}


NODE_GROUPS = ("upload", "build", "migrate", "switch")
NOT_RUNS = ("list", "info", "help", "forget", "ignore", "clean", "dumpdb", "strace", "tabcompletion", "reset-dep")


def runs_tasks(argv: list[str]) -> bool:
    """Does this doit command run tasks (and so lock before its checks), or only look (list, info, ...)?"""
    words = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
    return not (words and words[0] in NOT_RUNS)


def refuse_bare_groups(argv: list[str]) -> None:
    """doit makes a group task of every node kind: a bare `doit switch` would switch every stage at once.
    Only the named form (switch:<stage>) is allowed."""
    words = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
    if not runs_tasks(argv):
        return
    for w in words:
        if w in NODE_GROUPS:
            sys.exit(f"ERROR: `doit {w}` would act on every stage; name one: doit {w}:<stage> (see doit list --all)")
