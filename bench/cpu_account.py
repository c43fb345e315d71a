"""Where the CPU of a fleet run goes: the deploying machine's side (the tool's process, its ssh clients)
against the hosts' side (each fake host's sshd and everything under it), for bench_fleet.py --cpu.

On this lab every host shares the deploying machine's CPUs, so a host's own work (its sshd's login, its
shell and the programs the deploy runs there) takes CPU time from the deployer; on a real fleet each host
has its own. Counting both sides says which part of a 16-host run a real fleet would not pay here.

How: the bench process becomes a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so processes that outlive
their parent come back to it instead of to init: the ssh master connections (ControlPersist daemons, whose
parent ssh has exited) and processes of a host's session that outlived theirs. Their CPU is read when
they are reaped (wait4's rusage, which includes what they reaped). A host's sshd listener is a child of
the bench (tests/harness.py): the connections it reaped are in its cutime/cstime (/proc/<pid>/stat).
"""
from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import time

PR_SET_CHILD_SUBREAPER = 36
TICK = os.sysconf("SC_CLK_TCK")


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children_cpu() -> float:
    """CPU seconds of the children this process has waited for, so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def listener_cpu(hosts) -> float:
    """CPU seconds of the hosts' sshd listeners and of the connections they have reaped."""
    total = 0.0
    for h in hosts:
        with open(f"/proc/{h.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15]) / TICK     # utime stime cutime cstime
    return total


def reap_orphans(keep: set[int], settle: float = 0.5) -> dict[str, float]:
    """Reap the exited processes that came back to this subreaper (never the pids in keep, the hosts'
    sshd listeners): CPU seconds by command name."""
    time.sleep(settle)
    got: dict[str, float] = {}
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            break
        if info is None or info.si_pid in keep:
            break
        try:
            with open(f"/proc/{info.si_pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            comm = "?"
        _, _, ru = os.wait4(info.si_pid, 0)
        got[comm] = got.get(comm, 0.0) + ru.ru_utime + ru.ru_stime
    return got


def login_cpu(hosts, ssh_options: list[str], repeat: int = 5) -> tuple[float, float]:
    """(client, host) CPU seconds of one bare SSH login (`ssh host true`, no master connection), with the
    tool's ssh options: the least a host costs in a run, before any work."""
    opts, i = [], 0
    while i < len(ssh_options):
        if ssh_options[i] == "-o" and ssh_options[i + 1].startswith("Control"):
            i += 2
            continue
        opts.append(ssh_options[i])
        i += 1
    opts += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    h = hosts[0]
    c0, s0 = children_cpu(), listener_cpu([h])
    for _ in range(repeat):
        subprocess.run(["ssh", *opts, "-p", str(h.port), "--", "127.0.0.1", "true"], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    time.sleep(0.3)
    return (children_cpu() - c0) / repeat, (listener_cpu([h]) - s0) / repeat
