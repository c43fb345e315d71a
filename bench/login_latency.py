#!/usr/bin/env python3
"""How long an SSH login takes, as the tool's ssh makes it against one over a TCP_NODELAY socket.

    .venv/bin/python bench/login_latency.py [--repeat 5]

Run as root (tests/lab/sshd.py's fake host: sshd on 127.0.0.1 in its own mount namespace). Both are a master
connection (ControlPersist) and then `true` through it, with the tool's key exchange:
  as ssh makes it   ssh -o ControlMaster=auto ... host true
  TCP_NODELAY       this script connects the TCP socket itself, sets TCP_NODELAY, and hands it to
                    `ssh -o ProxyCommand=- -f -N -M` as its stdin/stdout (the master), then `ssh host true`
                    through the master
Most of a loopback login is idle: ssh's small writes wait for the server's delayed ACK (Nagle), 40 ms at a
time; the second form shows how much of it a client socket with TCP_NODELAY takes away.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                  # the tests' lab: tests.lab

from tests.lab.sshd import SshHosts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="login-latency-"))
    hosts = SshHosts(base / "hosts", names=["h0"])
    h = list(hosts)[0]
    opts = ["-F", str(hosts.ssh_config), "-o", "BatchMode=yes", "-o", "KexAlgorithms=curve25519-sha256",
            "-p", str(h.port)]

    def close(path: str) -> None:
        subprocess.run(["ssh", *opts, "-o", f"ControlPath={path}", "-O", "exit", "127.0.0.1"], capture_output=True)

    def plain(i: int) -> float:
        path = f"{base}/plain-{i}"
        t = time.perf_counter()
        subprocess.run(["ssh", *opts, "-o", "ControlMaster=auto", "-o", f"ControlPath={path}",
                        "-o", "ControlPersist=60", "127.0.0.1", "true"], check=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        close(path)
        return wall

    def nodelay(i: int) -> float:
        path = f"{base}/nodelay-{i}"
        t = time.perf_counter()
        with socket.create_connection(("127.0.0.1", h.port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            subprocess.run(["ssh", *opts, "-o", "ProxyCommand=-", "-o", "ControlMaster=yes",
                            "-o", f"ControlPath={path}", "-o", "ControlPersist=60", "-f", "-N", "127.0.0.1"],
                           stdin=s.fileno(), stdout=s.fileno(), check=True)
        subprocess.run(["ssh", *opts, "-o", "ControlMaster=no", "-o", f"ControlPath={path}", "127.0.0.1", "true"],
                       check=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        close(path)
        return wall

    try:
        got = {"as ssh makes it": [], "TCP_NODELAY socket": []}
        for i in range(args.repeat):
            got["as ssh makes it"].append(plain(i))
            got["TCP_NODELAY socket"].append(nodelay(i))
    finally:
        hosts.stop()
    for name, walls in got.items():
        print(f"{name:20s} median {1000 * statistics.median(walls):.0f} ms "
              f"({1000 * min(walls):.0f}-{1000 * max(walls):.0f}) over {args.repeat}")


if __name__ == "__main__":
    main()
