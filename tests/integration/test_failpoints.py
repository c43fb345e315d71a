"""tasks/failpoints.py in a real process: `kill` kills it right there; `pause` stops it until SIGCONT, and the
lab's wait for that stop (tests/lab/deployer.py) tells a paused run from one that ended first."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.lab.deployer import wait_paused


def test_kill_kills_the_process_right_there():
    code = ("import os; os.environ['DEPLOY_FAILPOINTS'] = 'switch.after_rename=kill'\n"
            "from doit_stages import failpoints\nprint('before', flush=True)\nfailpoints.hit('switch.after_rename')\n"
            "print('after', flush=True)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == -9 and res.stdout == "before\n"


def test_pause_stops_the_process_until_it_is_continued():
    code = ("import os; os.environ['DEPLOY_FAILPOINTS'] = 'build.after_unpack=pause'\n"
            "from doit_stages import failpoints\nprint('before', flush=True)\nfailpoints.hit('build.after_unpack')\n"
            "print('after', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "before\n"
        assert wait_paused(proc, timeout=30), "the process never stopped"
        assert _state(proc.pid) == "T"
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.stdout.read() == "after\n" and proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_process_that_ends_before_its_pause_is_told_apart_and_keeps_its_exit_status():
    code = ("import os, sys; os.environ['DEPLOY_FAILPOINTS'] = 'build.after_unpack=pause'\n"
            "from doit_stages import failpoints\nfailpoints.hit('switch.after_rename')\nsys.exit(3)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    assert not wait_paused(proc, timeout=30)
    assert proc.wait(timeout=30) == 3
