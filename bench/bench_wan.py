#!/usr/bin/env python3
"""A deploy over a WAN: how many serial round trips each command waits for, ours and pyinfra's.

    .venv/bin/python bench/bench_wan.py [--hosts 1,16] [--delays direct,0,25] [--repeat 3] [--fast-kex]
        [--parallel N] [--trace]

Run as root (tests/lab/sshd.py's fake hosts: one sshd per host on 127.0.0.1, in its own mount namespace).
Between the deploying machine and each host sits a relay of bench/delay_proxy.py that holds every chunk D ms
in each direction (a round trip of 2D; no bandwidth cap); `direct` is no relay at all. A command that waits
for R answers one after another takes R x 2D longer at D than at 0, so

    serial round trips = (t(D) - t(0)) / RTT,   RTT = the relay's measured ping-pong at D minus at 0

per command (whole process, wall seconds, as a user times it) and per doit node (bench/_doit_probe.py: its
check and action seconds, from inside the process). Beside them the probe counts each node's exchanges over
the hosts' framed sessions (tasks/remote_shell.py: one exchange = one command, or a streamed input's "go"
and its bytes; the session's hello waits for the SSH login) and the ssh processes it starts.

Per host count, delay and repeat (the order of the delays and of ours/pyinfra rotates; medians over repeats):
  ours      on fresh hosts and a fresh workdir (bench_deploy.Workdir: stages test, staging, prod; code only,
            build = none): `deploy:test` cold, `deploy:test` no-op, `promote:staging`, `promote:prod`, each
            with the SSH master connections closed first (a new command, as a user runs it). [stage:prod]
            has reload_command = true and a health_url served on 127.0.0.1 behind its own relay (so the
            health check crosses the WAN too): promote:prod switches, reloads, checks health, logs, verifies.
  pyinfra   bench_fleet.run_pyinfra: files.put of our tarball, an unpack, files.link; then the same again.
Also: one bare SSH login (`ssh host true` with the tool's options, no master) and one command through a
master, at each delay. --warm: each of our commands reuses the master connections of the one before it (a
`doit status` before the first), as commands run within ControlPersist (60 s) of each other do. --fast-kex
adds `ssh_fast_kex = yes` (curve25519 first, as paramiko/pyinfra); --parallel N sets [project] parallel
(pyinfra works every host at once).
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                  # the tests' lab: tests.lab
sys.path.insert(0, str(REPO / "bench"))

import bench_deploy  # noqa: E402
from bench_deploy import ForeignLoad, Workdir, close_masters, ran_nodes  # noqa: E402
from bench_fleet import compile_tree, ensure_pyinfra, run_pyinfra  # noqa: E402
from delay_proxy import DelayProxy  # noqa: E402

from tests.lab.apprepo import AppRepo  # noqa: E402
from tests.lab.sshd import SshHosts  # noqa: E402

EXIT = "(exit: locks released, sessions closed)"
OURS = [  # (label, doit command, the only nodes whose action may run: None = any)
    ("deploy:test cold", "deploy:test", None),
    ("deploy:test no-op", "deploy:test", {"verify:test"}),
    ("promote:staging", "promote:staging", None),
    ("promote:prod", "promote:prod", None),
]


class Via:
    """A host of tests/lab/sshd.py as reached through its relay: the relay's port, the host's everything else."""

    def __init__(self, host, port: int):
        self._host, self.port = host, port

    @property
    def url(self) -> str:
        return f"ssh://{self._host.hosts.user}@127.0.0.1:{self.port}"

    def __getattr__(self, name):
        return getattr(self._host, name)


class Lab:
    """The hosts, a relay for each and for the health server, and client files that know the relays' ports."""

    def __init__(self, base: Path, count: int):
        self.hosts = SshHosts(base / "hosts", names=[f"h{i}" for i in range(count)])
        self.user, self.identity = self.hosts.user, self.hosts.identity
        self.proxy = DelayProxy([h.port for h in self.hosts])
        self.health = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
        threading.Thread(target=self.health.serve_forever, daemon=True).start()
        self.health_port = self.proxy.add(self.health.server_address[1])
        self.known_hosts = base / "known_hosts_wan"
        self.known_hosts.write_text("".join(
            f"{h.known_hosts_line}\n[127.0.0.1]:{self.proxy.port_of(h.port)} {h.public_host_key}\n"
            for h in self.hosts))
        self.ssh_config = base / "ssh_config_wan"
        self.ssh_config.write_text(self.hosts.client_config(self.known_hosts))
        self.direct = False

    def view(self, n: int) -> list:
        hosts = list(self.hosts)[:n]
        return hosts if self.direct else [Via(h, self.proxy.port_of(h.port)) for h in hosts]

    def set_delay(self, delay: str) -> None:
        self.direct = delay == "direct"
        self.proxy.delay_ms = 0.0 if self.direct else float(delay)

    def take(self) -> list[dict]:
        time.sleep(0.1)                   # the relay sees the closes
        return self.proxy.take_connections()

    def turns(self, conns: list[dict]) -> dict:
        """Round trips the client waited for (bench/delay_proxy.py), per host (the most of any host, all of
        its connections), and the health check's."""
        per: dict[int, int] = {}
        for c in conns:
            per[c["target"]] = per.get(c["target"], 0) + c["turns"]
        health = per.pop(self.health.server_address[1], 0)
        return {"host": max(per.values(), default=0), "health": health, "connections": len(conns)}

    def stop(self) -> None:
        self.health.shutdown()
        self.proxy.stop()
        self.hosts.stop()


class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def run_ours(lab: Lab, n: int, source: Path, work: Path, fast_kex: bool, trace: bool = False,
             parallel: int | None = None, warm: bool = False) -> dict:
    hosts = lab.view(n)
    for h in hosts:
        h.wipe()
    close_masters(hosts, lab.ssh_config)
    health = f"http://{{host}}:{lab.health_port if not lab.direct else lab.health.server_address[1]}/"
    w = Workdir(work, source, hosts, lab.ssh_config, "none", None, None,
                extra=("ssh_fast_kex = yes\n" if fast_kex else "") + (f"parallel = {parallel}\n" if parallel else ""),
                prod_extra=f"reload_command = true\nhealth_url = {health}\n")
    if trace:
        w.env["BENCH_PROBE_TRACE"] = "1"
    out = {}
    lab.proxy.take_connections()
    alive: list[dict] = []      # warm: the master connections, kept from one command to the next
    if warm:                    # a command before the first (status: it logs in to every host, reads, ends)
        close_masters(hosts, lab.ssh_config)
        w.doit("status")
        alive += lab.take()
    for label, command, allowed in OURS:
        if not warm or not alive:
            close_masters(hosts, lab.ssh_config)
            lab.proxy.take_connections()
        f0 = FOREIGN.read()
        started = time.monotonic()
        wall, probe, res = w.doit(command)
        ended = time.monotonic()          # what the relay sees after this (the masters closed below) is not the run's
        foreign = FOREIGN.read() - f0
        ran = ran_nodes(probe)
        if allowed is not None and not ran <= allowed:
            raise SystemExit(f"{label}: only {sorted(allowed)} should have run, but {sorted(ran)} did:\n{res.stdout}")
        if warm:     # the relay's stamps of this command only, on the connections it opened or reused
            alive += lab.take()
            conns = [dict(c, at=[a for a in c["at"] if started <= a <= ended]) for c in alive]
            conns = [c for c in conns if c["at"]]
        else:
            close_masters(hosts, lab.ssh_config)          # its connections end: their turns are complete
            conns = [dict(c, at=[a for a in c["at"] if a <= ended]) for c in lab.take()]
        for c in conns:
            c["turns"] = len(c["at"])
        out[label] = {"wall": wall, "probe": probe, "foreign": foreign, "turns": lab.turns(conns),
                      "node_turns": node_turns(probe, conns, lab.health.server_address[1])}
    rid = os.readlink(hosts[0].path("/srv/bench/sites/test"))
    for h in hosts:       # it did the work: every host's prod link names the release test got
        assert os.readlink(h.path("/srv/bench/sites/current")) == rid, h
    if warm:
        close_masters(hosts, lab.ssh_config)
    return out


def run_pyi(lab: Lab, n: int, exe: Path, archive: Path, work: Path) -> dict:
    f0 = FOREIGN.read()
    lab.proxy.take_connections()
    got = run_pyinfra(lab.view(n), lab, exe, archive, work)
    conns = lab.take()                # one connection per host and run, in order: the cold run's come first
    return {"pyinfra cold": {"wall": got["cold"], "turns": lab.turns(conns[:len(conns) // 2])},
            "pyinfra no-op": {"wall": got["noop"], "turns": lab.turns(conns[len(conns) // 2:])},
            "_foreign": FOREIGN.read() - f0}


def ssh_probes(lab: Lab, fast_kex: bool, count: int = 5) -> dict:
    """Wall seconds of a bare login (`ssh host true`, no master) and of `true` through a master."""
    from doit_stages.remote_shell import ssh_argv, ssh_options
    h = lab.view(1)[0]
    opts = ssh_options(lab.ssh_config, fast_kex)
    pairs = [opts[i:i + 2] for i in range(0, len(opts), 2)]       # ["-F", cfg], ["-o", "X=y"], ...
    bare = [w for p in pairs if not p[1].startswith("Control") for w in p]
    bare += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]

    def timed(argv):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        return time.perf_counter() - t
    lab.take()
    login = [timed(ssh_argv("127.0.0.1", lab.user, h.port, bare, ["true"])) for _ in range(count)]
    login_turns = med([c["turns"] for c in lab.take()])
    close_masters([h], lab.ssh_config)
    timed(ssh_argv("127.0.0.1", lab.user, h.port, opts, ["true"]))
    t0 = time.monotonic()
    through = [timed(ssh_argv("127.0.0.1", lab.user, h.port, opts, ["true"])) for _ in range(count)]
    t1 = time.monotonic()
    close_masters([h], lab.ssh_config)
    through_turns = sum(1 for c in lab.take() for a in c["at"] if t0 <= a <= t1) / count
    return {"bare login (`ssh host true`, no master)": statistics.median(login),
            "a command through a master (`ssh host true`)": statistics.median(through),
            "_turns": {"bare login (`ssh host true`, no master)": login_turns,
                       "a command through a master (`ssh host true`)": through_turns}}


def node_turns(probe: dict, conns: list[dict], health: int) -> dict[str, int]:
    """The relay's turns (round trips the client waited for) per doit node: each turn goes to the node whose
    check or action ran when it began (the most of any host; the health check's connection counted apart)."""
    spans = [(name, s, e) for name, n in probe.get("nodes", {}).items() for _, s, e in n.get("spans", [])]
    per: dict[str, dict[int, int]] = {}
    for c in conns:
        for at in c["at"]:
            name = next((nm for nm, s, e in spans if s <= at <= e), None)
            if name is None:
                first = min((s for _, s, _ in spans), default=at)
                name = "(start-up)" if at < first else EXIT
            key = "health" if c["target"] == health else c["target"]
            per.setdefault(name, {}).setdefault(key, 0)
            per[name][key] += 1
    return {name: max(v for k, v in hosts.items() if k != "health") if any(k != "health" for k in hosts) else 0
            for name, hosts in per.items()} | {
        f"{name} (health check)": hosts["health"] for name, hosts in per.items() if "health" in hosts}


def node_times(probe: dict) -> dict[str, float]:
    """Seconds per node (check + action), plus the start-up (interpreter to first node) and the exit."""
    got = {"(start-up)": probe.get("boot_s", 0) + probe.get("startup_s", 0)}
    for name, n in probe.get("nodes", {}).items():
        if not name.startswith("("):
            got[name] = n["check_s"] + n["run_s"]
    got[EXIT] = probe.get("exit_s", 0)
    return got


def exchanges(probe: dict, name: str) -> str:
    """'check 2 / run 5 (+1 login)': a node's exchanges per host (the most any host had)."""
    node = probe.get("nodes", {}).get(name, {})
    parts, logins = [], 0
    for phase, per in node.get("exchanges", {}).items():
        cmds = max(c for c, _ in per.values())
        logins = max(logins, max(lg for _, lg in per.values()))
        if cmds:
            parts.append(f"{phase} {cmds}")
    spawned = {k: v for k, v in node.get("spawns", {}).items() if k.startswith("ssh")}
    text = " / ".join(parts) + (f" (+{logins} login)" if logins else "")
    if spawned:
        text += "; " + ", ".join(f"{k} x{v}" for k, v in spawned.items())
    return text or "—"


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(results: dict, rtts: dict, delays: list[str], counts: list[int], probes: dict) -> str:
    """Markdown: walls per (n, delay), serial round trips, and per node of each command at 1 host."""
    lines = []
    walls = {}
    for (n, d), reps in results.items():
        for rep in reps:
            for label, r in rep.items():
                if not label.startswith("_"):
                    walls.setdefault((n, d, label), []).append(r["wall"])
    labels = [lb for lb, *_ in OURS] + ["pyinfra cold", "pyinfra no-op"]
    wan = [d for d in delays if d not in ("direct", "0")]
    top = wan[-1]
    lines += ["| command | hosts | " + " | ".join(f"t({d}) s" for d in delays) + " | "
              + " | ".join(f"round trips at {d} ms" for d in wan)
              + f" | turns at {top} ms: per host + health check (connections) |",
              "| --- | ---: |" + " ---: |" * (len(delays) + len(wan)) + " --- |"]
    for n in counts:
        for label in labels:
            t = {d: med(walls.get((n, d, label), [])) for d in delays}
            rts = [f"{(t[d] - t['0']) / rtts[d]:.1f}" for d in wan]
            turns = [r[label]["turns"] for r in results[(n, top)]]
            tt = (f"{med([x['host'] for x in turns]):.0f} + {med([x['health'] for x in turns]):.0f} "
                  f"({med([x['connections'] for x in turns]):.0f})")
            lines.append(f"| {label} | {n} | " + " | ".join(f"{t[d]:.2f}" for d in delays) + " | "
                         + " | ".join(rts) + f" | {tt} |")
    lines += ["", "Ours / pyinfra, pair by pair (medians):", "",
              "| hosts | delay | ours cold | pyinfra cold | ratio | ours no-op | pyinfra no-op | ratio |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in counts:
        for d in delays:
            reps = results[(n, d)]
            cells = []
            for ours, pyi in (("deploy:test cold", "pyinfra cold"), ("deploy:test no-op", "pyinfra no-op")):
                cells += [f"{med([r[ours]['wall'] for r in reps]):.2f}", f"{med([r[pyi]['wall'] for r in reps]):.2f}",
                          f"{med([r[ours]['wall'] / r[pyi]['wall'] for r in reps]):.2f}"]
            lines.append(f"| {n} | {d} | " + " | ".join(cells) + " |")
    for n in counts:
        for label, *_ in OURS:
            lines += ["", f"Per node, `{label}`, {n} host(s): seconds (medians) and serial round trips "
                      f"(t(D) - t(0)) / RTT; the relay's turns at {top} ms in the node (median; the most of any "
                      "host); exchanges per host over the session (check / run), ssh processes:", "",
                      "| node | " + " | ".join(f"t({d}) s" for d in delays) + " | "
                      + " | ".join(f"round trips at {d} ms" for d in wan) + f" | turns at {top} ms | "
                      "exchanges per host |",
                      "| --- |" + " ---: |" * (len(delays) + len(wan) + 1) + " --- |"]
            per = {d: [node_times(r[label]["probe"]) for r in results[(n, d)]] for d in delays}
            nt = [r[label]["node_turns"] for r in results[(n, top)]]
            names = list(per["0"][0])
            names += sorted({k for x in nt for k in x if k not in names}, key=lambda k: (k not in names, k))
            for name in names:
                t = {d: med([p.get(name, 0.0) for p in per[d]]) for d in delays}
                rts = [f"{(t[d] - t['0']) / rtts[d]:.1f}" for d in wan]
                lines.append(f"| `{name}` | " + " | ".join(f"{t[d]:.3f}" for d in delays) + " | " + " | ".join(rts)
                             + f" | {med([x.get(name, 0) for x in nt]):.0f}"
                             + f" | {exchanges(results[(n, '0')][0][label]['probe'], name)} |")
    lines += ["", "| one ssh, 1 host | " + " | ".join(f"t({d}) ms" for d in delays) + " | "
              + " | ".join(f"round trips at {d} ms" for d in wan) + f" | turns at {top} ms |",
              "| --- |" + " ---: |" * (len(delays) + len(wan) + 1)]
    for what in [k for k in probes[delays[0]][0] if not k.startswith("_")]:
        t = {d: med([p[what] for p in probes[d]]) for d in delays}
        lines.append(f"| {what} | " + " | ".join(f"{1000 * t[d]:.0f}" for d in delays) + " | "
                     + " | ".join(f"{(t[d] - t['0']) / rtts[d]:.1f}" for d in wan)
                     + f" | {med([p['_turns'][what] for p in probes[top]]):.1f} |")
    return "\n".join(lines)


FOREIGN: ForeignLoad


def show_trace(fast_kex: bool, warm: bool = False) -> None:
    """--trace: each command's exchanges, node by node, on 1 host at 50 ms (the probe's trace); --warm too:
    each command reusing the master connection of the one before."""
    base = Path(tempfile.mkdtemp(prefix="bench-wan-trace-"))
    lab = Lab(base, 1)
    try:
        lab.set_delay("50")
        got = run_ours(lab, 1, AppRepo(base / "app").path, base / "work", fast_kex, trace=True, warm=warm)
    finally:
        FOREIGN.stop()
        lab.stop()
    for label, r in got.items():
        p = r["probe"]
        print(f"\n`{label}` at 50 ms, 1 host: {r['wall']:.2f} s, {r['turns']['host']} turns (+ "
              f"{r['turns']['health']} health check)\n")
        print("| node | phase | turns | exchange (command over the session) | starts at, ms | ms |\n"
              "| --- | --- | ---: | --- | ---: | ---: |")
        turns = dict(r["node_turns"])
        turns["(exit)"] = turns.pop(EXIT, 0)         # the probe names the time after doit's main "(exit)"
        shown = set()
        for ev in p["trace"]:
            first = ev["node"] not in shown
            shown.add(ev["node"])
            print(f"| {ev['node'] if first else ''} | {ev['phase']} | {turns.get(ev['node'], 0) if first else ''} | "
                  f"`{ev['what']}` | {1000 * ev['start_s']:.0f} | {1000 * ev['seconds']:.0f} |")
        for name, count in turns.items():
            if name not in shown and count:
                what = ("its own TCP connection: the connect, then the GET" if "health" in name
                        else "no command over the session: the session's end")
                print(f"| {name} | | {count} | ({what}) | | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", default="1,16")
    ap.add_argument("--delays", default="direct,0,25", help="one-way delays in ms; direct = no relay; 0 needed")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fast-kex", action="store_true", help="ssh_fast_kex = yes for our runs")
    ap.add_argument("--parallel", type=int, help="[project] parallel for our runs (default: the tool's, 10)")
    ap.add_argument("--warm", action="store_true", help="our commands back to back, each reusing the SSH master "
                    "connections of the one before (within ControlPersist, 60 s): no login but the first command's")
    ap.add_argument("--json", help="also write every run's figures here")
    ap.add_argument("--trace", action="store_true", help="instead: one run of each command on 1 host at 50 ms, "
                    "each command over the session listed by node")
    args = ap.parse_args()
    counts = [int(x) for x in args.hosts.split(",")]
    delays = args.delays.split(",")
    if "0" not in delays:
        raise SystemExit("--delays must include 0: the round trips are (t(D) - t(0)) / RTT")
    global FOREIGN
    FOREIGN = bench_deploy.FOREIGN = ForeignLoad()
    if args.trace:
        show_trace(args.fast_kex, args.warm)
        return
    exe = ensure_pyinfra()
    compile_tree(REPO)
    base = Path(tempfile.mkdtemp(prefix="bench-wan-"))
    lab = Lab(base, max(counts))
    rtts: dict[str, float] = {}
    try:
        lab.set_delay("0")
        zero = lab.proxy.measure_rtt()
        for d in delays:
            if d not in ("direct", "0"):
                lab.set_delay(d)
                rtts[d] = lab.proxy.measure_rtt() - zero
                print(f"relay at {d} ms each way: a round trip costs {1000 * rtts[d]:.2f} ms more than at 0 "
                      f"({1000 * zero:.2f} ms)", flush=True)
        lab.proxy.take_connections()
        source = AppRepo(base / "app").path
        lab.set_delay("0")
        prep = run_ours(lab, 1, source, base / "prep", args.fast_kex)    # warm-up; pyinfra puts its tarball
        archive = next((base / "prep" / "build").glob("*.tar.gz"))
        del prep
        results: dict[tuple, list] = {(n, d): [] for n in counts for d in delays}
        probes: dict[str, list] = {d: [] for d in delays}
        load0 = os.getloadavg()
        for rep in range(args.repeat):
            order = delays[rep % len(delays):] + delays[:rep % len(delays)]
            for d in order:
                lab.set_delay(d)
                probes[d].append(ssh_probes(lab, args.fast_kex))
                for n in counts:
                    tag = f"{n}-{d}-{rep}"
                    pair = {}
                    whos = ["ours", "pyinfra"] if rep % 2 == 0 else ["pyinfra", "ours"]
                    for who in whos:
                        if who == "ours":
                            pair.update(run_ours(lab, n, source, base / f"ours-{tag}", args.fast_kex,
                                                 parallel=args.parallel, warm=args.warm))
                        else:
                            pair.update(run_pyi(lab, n, exe, archive, base / f"pyi-{tag}"))
                    results[(n, d)].append(pair)
                    print(f"#{rep + 1} N={n:<2} D={d:>6}: " + ", ".join(
                        f"{k} {v['wall']:.2f}" for k, v in pair.items() if not k.startswith("_"))
                        + f"  (others' CPU-s during ours: "
                          f"{sum(v.get('foreign', 0) for v in pair.values() if isinstance(v, dict)):.2f}, "
                          f"pyinfra: {pair['_foreign']:.2f})", flush=True)
        load1 = os.getloadavg()
    finally:
        FOREIGN.stop()
        lab.stop()
    rtts["direct"] = rtts["0"] = float("nan")
    text = report(results, rtts, delays, counts, probes)
    text += (f"\n\n- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
             f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end; "
             f"`bench/bench_wan.py {' '.join(sys.argv[1:])}`; key exchange "
             f"{'curve25519 first (ssh_fast_kex = yes)' if args.fast_kex else 'OpenSSH default'}; "
             f"parallel {args.parallel or 'the default'}; "
             f"{'warm: each command reuses the master connections of the one before; ' if args.warm else ''}"
             f"code {bench_deploy.code_state()}")
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({f"{n}|{d}": v for (n, d), v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
