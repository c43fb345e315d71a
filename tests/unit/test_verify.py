"""steps/verify.py: the checks run by pytest in the doit process, isolated from the user's pytest setup."""
from __future__ import annotations

import os


def test_the_checks_run_without_the_users_pytest_environment_which_comes_back_after(monkeypatch):
    """verify runs pytest in the doit process: PYTEST_ADDOPTS / PYTEST_PLUGINS of the user's shell must not
    reach the checks, plugin autoloading is off, and afterwards the environment and sys.path are as before."""
    import sys

    from doit_stages.steps.verify import isolated
    monkeypatch.setenv("PYTEST_ADDOPTS", "-x --pdb")
    monkeypatch.setenv("PYTEST_PLUGINS", "someones_plugin")
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    path = list(sys.path)
    with isolated():
        assert "PYTEST_ADDOPTS" not in os.environ and "PYTEST_PLUGINS" not in os.environ
        assert os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
        sys.path.insert(0, "/the/checks")
    assert (os.environ["PYTEST_ADDOPTS"], os.environ["PYTEST_PLUGINS"]) == ("-x --pdb", "someones_plugin")
    assert "PYTEST_DISABLE_PLUGIN_AUTOLOAD" not in os.environ and sys.path == path
