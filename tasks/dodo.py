"""The tasks a project's dodo.py exposes to doit. The whole dodo.py of a repository that uses doit-stages:

    from doit_stages.dodo import *  # noqa: F403  (DOIT_CONFIG and the task_* creators)

Which stages.ini: $STAGES_INI, else ./stages.ini where doit was run. Importing this module reads it (a bad
one stops there with one line, before doit makes its dep file), then starts the SSH logins of a command that
runs tasks in the background, before it imports the task modules (start.this_run); no lock is taken until a
task runs.
"""
from __future__ import annotations

from .start import this_run

this_run()   # the config read and checked, the logins under way while the rest is imported

from . import doit_tasks as _w  # noqa: E402  (after this_run: its imports overlap the logins)
from . import nodes as _n  # noqa: E402
from .config import Config  # noqa: E402

__all__ = ["DOIT_CONFIG", "task_archive", "task_upload", "task_build", "task_migrate", "task_switch",
           "task_commands", "task_operate", "task_status", "task__hint"]

DOIT_CONFIG = _w.doit_config()


def task_archive():
    """build/<id>.tar.gz from the revision (DEPLOY_REVISION, [project] revision or the head)."""
    return _w.archive(_w.this_run())


def task_upload():
    """upload:<stage>: the release's archive on every host of the stage, sha256 checked."""
    yield from _w.per_stage(_w.this_run(), "upload", "archive on every {stage.name} host", _n.run_upload,
                            _n.upload_done)


def task_build():
    """build:<stage>: releases/<id> unpacked, built and marked ready on every host of the stage."""
    yield from _w.per_stage(_w.this_run(), "build", "release built on every {stage.name} host", _n.run_build,
                            _n.build_done)


def task_migrate():
    """migrate:<stage>: the release's migrations on the stage's database (backed up around it)."""
    yield from _w.per_stage(_w.this_run(), "migrate", "migrations on database {stage.database}", _n.run_migrate,
                            _n.migrate_done, only=Config.migrates)


def task_switch():
    """switch:<stage>: the stage's link to the release, by rename, on all hosts or none."""
    yield from _w.per_stage(_w.this_run(), "switch", "{stage.link} -> the release on every {stage.name} host",
                            _n.run_switch, _n.switch_done)


def task_commands():
    """deploy:/promote:<stage> and the commands beside them (backup, restore, verify, rollback, unlock, ...)."""
    yield from _w.commands_(_w.this_run())


def task_operate():
    """run:<stage> CMD, console:<stage>, logs:<stage>, plan:<stage>: the operator's commands."""
    yield from _w.operators(_w.this_run())


def task_status():
    """a table: stage, release, revision, when, by whom, hosts in agreement or not."""
    return _w.status(_w.this_run())


def task__hint():
    """(default) say how to begin."""
    return _w.hint(_w.this_run())

