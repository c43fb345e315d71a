"""The unit tests: pure code on plain inputs, the quick loop (`./scripts/test tests/unit`). None of them may
start a process (no sshd, no doit, not even `sh`) or reach a database: each test runs with process creation
and connections to the database ports refused, so a test that needs either fails here, saying so, and
belongs in tests/integration/."""
from __future__ import annotations

import _posixsubprocess
import os
import platform
import socket
import subprocess

import pytest

DATABASE_PORTS = {3306, 5432}      # MariaDB, PostgreSQL

# plumbum reads platform.uname() when it is imported, and platform asks `uname -p` once and caches it: asked
# here, before the guard, so that a test file run alone imports the package as it does in the whole run
platform.uname().processor


def _refused(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test started a process ({what}): move it to tests/integration/")
    return refuse


@pytest.fixture(autouse=True)
def no_process_no_database(monkeypatch):
    """subprocess (every way in: run, Popen, check_output...), multiprocessing, and os's own fork, spawn,
    system and exec; a connection to a database port."""
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refused("subprocess"))
    monkeypatch.setattr(_posixsubprocess, "fork_exec", _refused("fork_exec"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve", "execvp",
                 "execvpe"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refused(f"os.{name}"))
    connect = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and len(address) >= 2 and address[1] in DATABASE_PORTS:
            raise AssertionError(f"a unit test connected to {address[0]}:{address[1]} (a database): move it "
                                 "to tests/integration/")
        return connect(self, address)
    monkeypatch.setattr(socket.socket, "connect", guarded)
