"""What a project's dodo.py exposes to doit. The whole dodo.py of a repository that uses doit-stages:

    from doit_stages.dodo import load
    globals().update(load())

`load()` reads the stages.ini in use ($STAGES_INI, else ./stages.ini where doit was run): a bad config stops
here with one line, before anything touches a host. It holds the project's run lock (an flock on
.doit-stages.lock next to stages.ini) until doit exits; the open lock file is returned among the names, so
it stays referenced for the whole run.
"""
from __future__ import annotations

import sys

from .doit_tasks import creators, doit_config, hold_project_lock, ini_path, load_or_exit, refuse_bare_groups


def load(argv: list[str] | None = None) -> dict:
    """DOIT_CONFIG and the task_* creators for the stages.ini in use (plus the held lock, as _doit_stages_lock)."""
    refuse_bare_groups(sys.argv if argv is None else argv)
    config = load_or_exit(ini_path())
    return {"DOIT_CONFIG": doit_config(config.path), "_doit_stages_lock": hold_project_lock(config.path),
            **creators(config)}
