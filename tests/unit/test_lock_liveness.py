"""Who holds a lock, and is its run alive: the rule `doit unlock` follows (commands.live_runs), on plain
holders (this process is the live one here; the probe, the guard and a dead process:
tests/integration/test_lock_liveness.py)."""
from __future__ import annotations

import os
import socket

from doit_stages.commands import live_runs

HERE = socket.gethostname()


def holder(**kw) -> dict:
    return {"user": "ci", "machine": HERE, "pid": os.getpid(), "what": "doit promote:prod", "time": "t",
            "token": "t1", **kw}


def test_live_runs_names_each_live_holder_once():
    here = holder()
    elsewhere = holder(machine="runner-7", pid=1, token="t2")
    gone = holder(machine="runner-8", pid=1, token="t3")
    live = live_runs([("web1", here, []), ("web2", here, []), ("web3", elsewhere, []), ("web4", elsewhere, [4242]),
                      ("web5", gone, [])])
    assert set(live) == {"t1", "t2"}
    assert live["t1"].startswith("each of web1, web2 is locked by ci@") and f"pid {os.getpid()}" in live["t1"]
    assert "session pid 4242 on web4" in live["t2"] and "runner-7" in live["t2"]
    assert live_runs([("web1", None, [])]) == {}                       # an anonymous lock, nothing alive
