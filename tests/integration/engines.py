"""A test file on both database engines: its world fixture is conftest's engine_world (params mysql and
postgresql, module scope, so every test of the file runs once on a MySQL world and once on a PostgreSQL one,
in file order). A test whose promise is one engine's takes that engine only:

    @only_on("mysql", "why: what makes it MySQL's")
    def test_...(world): ...

With another parameter beside it, name the engine in the same parametrize, indirect and module-scoped (else
pytest scopes it per test and builds a world for every test):

    @pytest.mark.parametrize("engine, point", [("mysql", "a"), ("postgresql", "a")], indirect=["engine"],
                             scope="module")
"""
from __future__ import annotations

import pytest


def only_on(engine: str, why: str):
    """The test runs on `engine`'s world only; `why` says what makes its promise that engine's (kept in the
    source, where a reader looks)."""
    if engine not in ("mysql", "postgresql") or not why:
        raise ValueError(f"only_on({engine!r}, {why!r}): an engine and the reason")
    return pytest.mark.parametrize("engine", [engine], indirect=True, scope="module")
