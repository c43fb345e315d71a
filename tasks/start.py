"""The run of this doit process, made when dodo.py is imported, before the rest of the package: the config
read and checked (a bad one stops with one line, before doit makes its dep file, before anything touches a
host), the Session, and the SSH logins to the hosts the command names started in the background
(Connections.early), so that they overlap the import of the task modules, doit's start, its graph and the
archive. And what doit's command line says: its task words, whether it runs tasks, which hosts, databases
and secrets they need. Imports nothing of doit's but its initial workdir."""
from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import localcmd, report
from .config import Config, ConfigError, config_path, load_config
from .config.appenv import read_secrets
from .session import Session

if TYPE_CHECKING:
    from .releases import Releases

NODE_GROUPS = ("upload", "build", "migrate", "switch")
VERIFIES = ("deploy:", "promote:", "verify:", "rollback:")   # the commands that end with verify:<stage>
# what pytest.main loads beyond `import pytest` (its default plugins, pdb and unittest for them)
PYTEST_LOADS = ("_pytest.helpconfig", "_pytest.skipping", "_pytest.unittest", "_pytest.warnings",
                "_pytest.setuponly", "_pytest.setupplan", "_pytest.threadexception", "_pytest.unraisableexception",
                "pdb", "unittest", "difflib")
NOT_RUNS = ("list", "info", "help", "forget", "ignore", "clean", "dumpdb", "strace", "tabcompletion", "reset-dep")
# doit's options that take a value (`-f dodo.py`, `-v 2`): that value is no command or task name
VALUE_OPTIONS = ("-f", "--file", "-d", "--dir", "-v", "--verbosity", "-n", "--process", "-P", "--parallel-type",
                 "-r", "--reporter", "-o", "--output-file", "--backend", "--db-file", "--check_file_uptodate",
                 "--failure-verbosity")
# the commands and nodes that never read a database password; any other of a stage needs those of its
# database and its restore_from (build writes the env file; migrate, restore and backup log in)
NO_PASSWORD = ("status", "unlock", "verify", "rehearsal", "upload", "switch", "archive", "_hint", "run", "console",
               "logs", "plan")
# the commands whose stage's env file they write (build:<stage>, in the chain or a rollback's)
ENV_WRITERS = ("deploy", "promote", "build", "rollback")


def initial_workdir() -> Path:
    """Where the user ran doit (doit itself moves to dodo.py's dir): relative paths are relative to it."""
    from doit import get_initial_workdir
    return Path(get_initial_workdir())


def ini_path() -> Path:
    """The stages.ini in use."""
    return config_path(base=str(initial_workdir()))


def stop_early(message: str) -> None:
    """Stop with the one-line error before any task runs (exit status 1), written to DEPLOY_REPORT too when
    the command runs tasks and the report's directory exists."""
    if runs_tasks(sys.argv) and os.environ.get("DEPLOY_REPORT"):
        base = initial_workdir()
        words = task_words(sys.argv)
        summary = report.build_report(" ".join(words), report.named_stage(words), None, [], message,
                                      time.time(), time.time())
        if report.output_path(os.environ, "DEPLOY_REPORT", base).parent.is_dir():
            report.emit(os.environ, base, summary)
    sys.exit(f"ERROR: {message}")


class Run:
    """The config, the Session (opens nothing until a node asks, but for the early logins) and the Releases
    memo, made at its first use: its module is imported after the logins began (dodo.py)."""

    def __init__(self, config: Config, session: Session):
        self.config, self.session = config, session
        self._releases: Releases | None = None
        self._mutex = threading.Lock()

    @property
    def releases(self) -> Releases:
        with self._mutex:
            if self._releases is None:
                from .releases import Releases as Memo
                self._releases = Memo(self.session)
            return self._releases


@functools.cache
def this_run() -> Run:
    """The run of this doit process, made when dodo.py is imported: a bad config, a bare node group or an
    output file (DEPLOY_REPORT, ...) in no directory stops here with one line, before anything touches a
    host (DEPLOY_REPORT, when it can be, says so too)."""
    refuse_bare_groups(sys.argv)
    try:
        config = load_config(ini_path())
        wrong = wrong_chain(config, task_words(sys.argv)) if runs_tasks(sys.argv) else None
        if wrong:
            stop_early(wrong)
        outputs = report.check_outputs(os.environ, initial_workdir()) if runs_tasks(sys.argv) else None
        if outputs:
            stop_early(outputs)
        if runs_tasks(sys.argv):   # a missing password_env variable stops only the commands that need it
            config.require_passwords(databases_needed(config, task_words(sys.argv)))
            # the secrets likewise: read once, here, for the commands that write an env file
            read_secrets(config, stages_writing_env(config, task_words(sys.argv)), localcmd.call)
    except ConfigError as exc:
        stop_early(str(exc))
    session = Session(config)
    for name in report.OUTPUTS:
        path = report.output_path(os.environ, name, initial_workdir())
        if path is not None:
            session.outputs[name] = path
    session.lock_checks = runs_tasks(sys.argv)
    if session.lock_checks:   # the logins overlap the task modules' import, doit's graph, the archive's making
        session.connections.early(hosts_needed(config, task_words(sys.argv)))
    if session.lock_checks and any(w.startswith(VERIFIES) for w in sys.argv[1:]):
        # verify runs pytest and testinfra in this process: their import (~0.1 s) overlaps the waits on hosts
        session.warm_imports = ("pytest", f"{__package__}.steps.infra_plugin", *PYTEST_LOADS)
    return Run(config, session)


def task_words(argv: list[str]) -> list[str]:
    """doit's command and task names on its command line: no option, option value or var=value. What
    follows run:<stage> is its command (doit's pos_arg), not task names."""
    return [a for _, a in _task_words(argv)]


def _task_words(argv: list[str]):
    skip = False
    for i, a in enumerate(argv[1:], 1):
        if skip or a.startswith("-") or "=" in a:
            skip = not skip and a in VALUE_OPTIONS
            continue
        yield i, a
        if a.startswith("run:"):
            return


def command_after(argv: list[str], word: str) -> list[str]:
    """The command given after `word` (run:<stage>) on doit's command line, as typed: doit's own pos_arg
    drops every word holding '=' (it sets a doit variable of each). A leading `--` is doit's, not the
    command's."""
    at = next((i for i, a in _task_words(argv) if a == word), None)
    rest = [] if at is None else argv[at + 1:]
    return rest[1:] if rest[:1] == ["--"] else rest


def only_plans(argv: list[str]) -> bool:
    """Does this doit command run plan:<stage> tasks and nothing else?"""
    words = task_words(argv)
    return bool(words) and all(w.startswith("plan:") for w in words)


def runs_tasks(argv: list[str]) -> bool:
    """Does this doit command run tasks (and so lock before its checks), or only look (list, info, ...)?"""
    words = task_words(argv)
    return not (words and words[0] in NOT_RUNS)


def databases_needed(config: Config, words: list[str]) -> list[str]:
    """The databases whose password the named tasks use (doit's `run` and unknown names: none)."""
    needed: list[str] = []
    for word in words:
        kind, _, name = word.partition(":")
        stage = config.stages.get(name)
        if kind in NO_PASSWORD:
            continue
        if kind == "backup" and name in config.databases:
            needed.append(name)
        elif stage is not None:
            needed += [d for d in (stage.database, stage.restore_from) if d]
    return list(dict.fromkeys(needed))


def hosts_needed(config: Config, words: list[str]) -> list:
    """The hosts the named tasks reach first: each named stage's hosts and (but for run:, console: and
    logs:) its databases' backup hosts; for backup:<db>, that database's backup host only (a stage may
    share its name). Connections.early logs in to them while doit starts."""
    hosts: list = []
    for word in words:
        kind, _, name = word.partition(":")
        stage = config.stages.get(name) if kind != "backup" else None
        names = [d for d in (stage.database, stage.restore_from) if d] if stage is not None else [name]
        names = [] if kind in ("run", "console", "logs") else names
        hosts += [*(stage.hosts if stage is not None else ()),
                  *(config.databases[d].backup_host for d in names if d in config.databases)]
    return [h for h in dict.fromkeys(hosts) if h is not None]


def stages_writing_env(config: Config, words: list[str]) -> list:
    """The stages whose env file the named tasks write (so whose secrets they read): their builds."""
    stages = [config.stages.get(word.partition(":")[2]) for word in words if word.partition(":")[0] in ENV_WRITERS]
    return [s for s in dict.fromkeys(stages) if s is not None]


def wrong_chain(config: Config, words: list[str]) -> str | None:
    """deploy:<stage> of a stage that is promoted (it has promote_from), or promote:<stage> of one that is
    deployed: doit would only say the task does not exist. The one line says which to run."""
    for word in words:
        kind, _, name = word.partition(":")
        stage = config.stages.get(name)
        if kind not in ("deploy", "promote") or stage is None or word == stage.chain_task:
            continue
        if stage.promote_from:
            return (f"{word}: stage {name} is promoted from {stage.promote_from} ([stage:{name}] promote_from), "
                    f"not deployed: run doit {stage.chain_task}")
        return f"{word}: stage {name} is deployed, not promoted (it has no promote_from): run doit {stage.chain_task}"
    return None


def refuse_bare_groups(argv: list[str]) -> None:
    """doit makes a group task of every node kind: a bare `doit switch` would switch every stage at once.
    Only the named form (switch:<stage>) is allowed."""
    if not runs_tasks(argv):
        return
    for w in task_words(argv):
        if w in NODE_GROUPS:
            sys.exit(f"ERROR: `doit {w}` would act on every stage; name one: doit {w}:<stage> (see doit list --all)")
