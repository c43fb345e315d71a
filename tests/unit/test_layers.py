"""The layers of docs/architecture.md as pyproject.toml's import contract states them: kept by the package,
and broken by one upward import (import-linter's own API, in this process, on a copy of the package)."""
from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
BROKEN, KEPT = 1, 0


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """tasks/ copied as the package `layers_probe` (doit_stages is imported here already: a copy under
    that name would not be the one analysed), with the contract of pyproject.toml renamed to match."""
    shutil.copytree(ROOT / "tasks", tmp_path / "layers_probe", ignore=shutil.ignore_patterns("__pycache__"))
    contract = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    contract = re.split(r"^\[tool\.(?!importlinter)", contract, flags=re.M)[0]
    (tmp_path / "contract.toml").write_text("[tool.importlinter]" + contract.replace("doit_stages", "layers_probe"))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def lint(config: Path) -> int:
    return lint_imports(config_filename=str(config), no_cache=True, no_logo=True)


def test_the_package_keeps_its_layers():
    assert lint(ROOT / "pyproject.toml") == KEPT


def test_the_copy_keeps_them_until_the_runtime_imports_the_session(probe):
    assert lint(probe / "contract.toml") == KEPT
    lock = probe / "layers_probe" / "runtime" / "lock.py"
    lock.write_text(lock.read_text() + "\nfrom .. import session  # noqa: E402  (runtime is below session)\n")
    assert lint(probe / "contract.toml") == BROKEN


def test_database_work_never_imports_migration_work(probe):
    backup = probe / "layers_probe" / "steps" / "database" / "backup.py"
    backup.write_text(backup.read_text() + "\nfrom ..migration import migrate  # noqa: E402\n")
    assert lint(probe / "contract.toml") == BROKEN


@pytest.mark.parametrize("upward", ["from ..steps.database import backup", "from .. import session",
                                    "from .. import executor"])
def test_an_engine_imports_neither_the_steps_nor_the_run(probe, upward):
    """tasks/engines/ lies below the steps that ask it and below the session and executor: an engine works on
    the transport it is given and opens no connection of its own."""
    mysql = probe / "layers_probe" / "engines" / "mysql.py"
    mysql.write_text(mysql.read_text() + f"\n{upward}  # noqa: E402\n")
    assert lint(probe / "contract.toml") == BROKEN
