"""tasks/doit_tasks.py's reading of doit's command line: which words are task names, and whether a command
runs tasks at all (which decides the passwords it needs: tests/integration/test_cli_config_errors.py)."""
from __future__ import annotations


def test_task_words_skip_doit_options_and_their_values():
    from doit_stages.doit_tasks import runs_tasks, task_words
    argv = ["doit", "-f", "/x/dodo.py", "-v", "2", "--backend=sqlite3", "DEPLOY_X=1", "deploy:test", "-n", "2"]
    assert task_words(argv) == ["deploy:test"]
    assert not runs_tasks(["doit", "-f", "dodo.py", "list"]) and not runs_tasks(["doit", "-d", "list", "info"])
    assert runs_tasks(["doit", "-f", "dodo.py", "status"]) and runs_tasks(["doit"])
