"""Who holds a lock, and is its run alive: the rule `doit unlock` follows (runtime/lock.py), with a real dead
process and on the local transport in a temp dir; and the guard that keeps a run whose lock was taken from it
off the host (commands.live_runs on plain holders: tests/unit/test_lock_liveness.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from doit_stages.config import Host
from doit_stages.layout import Layout
from doit_stages.runtime.lock import LOST, alive_here, guarded, parse_probe, probe_lock, process_start
from doit_stages.transport import LocalTransport

HERE = socket.gethostname()


def holder(**kw) -> dict:
    return {"user": "ci", "machine": HERE, "pid": os.getpid(), "what": "doit promote:prod", "time": "t",
            "token": "t1", **kw}


def test_a_holder_on_this_machine_is_alive_while_its_process_is():
    assert alive_here(holder()) is True
    assert alive_here(holder(pid_start=process_start(os.getpid()))) is True
    assert alive_here(holder(pid_start=process_start(os.getpid()) + 1)) is False     # the pid was reused
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    assert alive_here(holder(pid=dead.pid)) is False
    assert alive_here(holder(machine="runner-7")) is None and alive_here(None) is None


def test_probe_reads_the_holder_and_its_live_sessions(tmp_path):
    layout, t = Layout(str(tmp_path)), LocalTransport(Host("local"))
    assert probe_lock(t, layout) == (False, None, [])
    Path(layout.lock).mkdir(parents=True)
    Path(layout.lock, "owner.json").write_text('{"token": "t1", "machine": "m", "pid": 1}')
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    me = os.getpid()
    Path(layout.lock_sessions).write_text(f"{me} {process_start(me)} {boot}\n{me} 1 {boot}\n1 1 other-boot\n")
    assert probe_lock(t, layout) == (True, {"token": "t1", "machine": "m", "pid": 1}, [me])
    assert parse_probe("owner {torn\nalive x\n") == (True, None, [])


def test_a_guarded_command_runs_only_while_the_lock_names_the_run(tmp_path):
    layout, t = Layout(str(tmp_path)), LocalTransport(Host("local"))
    mark = tmp_path / "mark"
    Path(layout.lock).mkdir(parents=True)
    Path(layout.lock, "owner.json").write_text('{"pid": 1, "token": "mine"}')
    script = ["sh", "-c", 'printf %s "$1" > "$2"', "sh", "ran", str(mark)]
    assert t.call(guarded(script, layout.lock, "mine"))[0] == 0 and mark.read_text() == "ran"
    assert t.call(guarded(["rm", "--", str(mark)], layout.lock, "mine"))[0] == 0 and not mark.exists()
    Path(layout.lock, "owner.json").write_text('{"pid": 2, "token": "another"}')
    code, _, err = t.call(guarded(script, layout.lock, "mine"))
    assert code == LOST and "no longer holds" in err and not mark.exists()
    Path(layout.lock, "owner.json").unlink()
    assert t.call(guarded(["touch", str(mark)], layout.lock, "mine"))[0] == LOST and not mark.exists()
