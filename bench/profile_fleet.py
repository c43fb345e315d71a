#!/usr/bin/env python3
"""Where a fleet deploy's wall time goes: one cold `deploy:test` and one no-op rerun on N fake hosts,
through bench/_doit_probe.py, with the round trips (commands over a host's session) per node per host.

    .venv/bin/python bench/profile_fleet.py [--hosts 16] [--runs 1] [--profile out.prof]

Run as root (tests/lab/sshd.py's fake hosts). Prints per run: interpreter start to the first node, each
node's check and action seconds, the round trips per host (min-max over hosts) of each, and the exit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                  # the tests' lab: tests.lab
sys.path.insert(0, str(REPO / "bench"))

from bench_deploy import check_local_only, close_masters  # noqa: E402
from bench_fleet import INI  # noqa: E402

from tests.lab.apprepo import AppRepo  # noqa: E402
from tests.lab.sshd import SshHosts  # noqa: E402

PROBE = REPO / "bench" / "_doit_probe.py"


def run(work: Path, env: dict, profile: str | None) -> tuple[float, dict]:
    out = work / f"probe-{time.monotonic_ns()}.json"
    env = dict(env, BENCH_PROBE_OUT=str(out))
    if profile:
        env["BENCH_PROBE_PROFILE"] = profile
    t = time.perf_counter()
    res = subprocess.run([sys.executable, str(PROBE), "-f", str(REPO / "dodo.py"), "deploy:test"], cwd=work,
                         env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"deploy:test exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return wall, json.loads(out.read_text())


def show(label: str, wall: float, data: dict) -> None:
    print(f"\n{label}: wall {wall:.3f} s (in-process {data['total_s']:.3f}; start-up to first node "
          f"{data['startup_s']:.3f}; after the last node {data['exit_s']:.3f})")
    print(f"  {'node':<24} {'check':>7} {'run':>7}  round trips per host (check / run / other), seconds")
    for name, n in data["nodes"].items():
        rtt = n.get("rtt", {})
        parts = []
        for phase in ("check", "run", "startup", "between", "exit"):
            per = rtt.get(phase, {})
            if per:
                counts = [c for c, _ in per.values()]
                secs = sum(s for _, s in per.values())
                parts.append(f"{phase} {min(counts)}-{max(counts)} x{len(per)} ({secs:.2f}s)")
        spawns = ", ".join(f"{k} {v}" for k, v in n["spawns"].items())
        print(f"  {name:<24} {n['check_s']:7.3f} {n['run_s']:7.3f}  {'; '.join(parts)}"
              + (f"  [spawns: {spawns}]" if spawns else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=16)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--profile", help="cProfile of the cold run's main thread to this file")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="profile-fleet-"))
    hosts = SshHosts(base / "hosts", names=[f"h{i}" for i in range(args.hosts)])
    try:
        repo = AppRepo(base / "app")
        for i in range(args.runs):
            work = base / f"work-{i}"
            work.mkdir()
            ini = INI.format(source=repo.path, ssh_config=hosts.ssh_config,
                             hosts=", ".join(h.url for h in hosts), build="none")
            check_local_only(list(hosts), hosts.ssh_config, ini)
            (work / "stages.ini").write_text(ini)
            env = dict(os.environ, STAGES_INI=str(work / "stages.ini"))
            env.pop("DEPLOY_REVISION", None)
            close_masters(list(hosts), hosts.ssh_config)
            for h in hosts:
                h.wipe()
            show(f"cold, {args.hosts} hosts", *run(work, env, args.profile if i == 0 else None))
            close_masters(list(hosts), hosts.ssh_config)
            show(f"no-op, {args.hosts} hosts", *run(work, env, None))
    finally:
        hosts.stop()


if __name__ == "__main__":
    main()
