#!/usr/bin/env python3
"""How long doit-stages takes on 1, 5, 25 hosts: a whole deploy, a no-op rerun, a promotion, status, verify.

    .venv/bin/python bench/bench_deploy.py [--hosts 1,5,25] [--pip-hosts 1,5] [--repeat 3] [--profile]

Run as root (the fake hosts of tests/lab/sshd.py: one sshd per host on 127.0.0.1, each in its own mount
namespace with its own /srv). Every host is in every stage; the stages are code-only (no database, so no
backup/restore/migrate nodes: docs/stages-ini.md, "A stage without database deploys code only"), `build = none`,
and `build = pip` (a venv from the wheelhouse on every host) for the --pip-hosts counts.

One sequence per (build, N, repeat), on freshly wiped hosts, a fresh workdir (dep file, build/) and no
live SSH master connection:

    deploy:test         cold: archive, upload, build, switch, verify
    deploy:test no-op   right after (SSH masters still up): every node up to date, verify runs
    deploy:test no-op, new SSH   the same after closing every SSH master connection
    verify:test         alone
    status
    promote:staging     the release test runs -> upload (up to date: same hosts), build, switch, verify
    promote:prod        the release staging runs; then its no-op rerun

Wall-clock seconds of each `doit` process (median, min-max over --repeat) go to a markdown table, printed
and written to bench/results.md with the machine's facts; the per-node breakdown of a cold deploy (check
and action seconds, ssh processes per host) comes from bench/_doit_probe.py, which runs doit in-process
as `python -m doit` does and times it from the inside. --profile adds a cProfile of one cold deploy at
N=5 and `python -X importtime` of the doit start-up.

--what-if times the cold deploy and its no-op rerun with speed-ups the tool does not have, patched in
at run time (bench/whatif.md). The machine may be shared: CPU used by other processes is measured during
every run, a sequence that others slowed down is redone once (--retries), and the cells still affected are
marked † in the table.

Traffic: every host is 127.0.0.1 and the ssh config names no other address (checked before any run);
there is no health_url; pip runs with PIP_NO_INDEX=1 and a local wheel directory (the pip variant is
skipped when none is found; pass --wheels DIR). A network audit (skip it with --no-audit) runs one cold
deploy and its rerun under `strace -f -e trace=connect,sendto,sendmsg,sendmmsg` and fails if any process
of the run talks to an address other than 127.0.0.1 / ::1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))                  # the tests' lab: tests.lab

from tests.lab.apprepo import AppRepo  # noqa: E402
from tests.lab.common import HarnessError  # noqa: E402
from tests.lab.sshd import SshHosts  # noqa: E402

PROBE = BENCH / "_doit_probe.py"
DODO = REPO / "dodo.py"
try:                                                      # where the tool keeps its SSH master sockets
    sys.path.insert(0, str(REPO))
    from doit_stages.transport import control_path
    TOOL_CONTROL_DIR = Path(control_path()).parent
except Exception:                                         # noqa: BLE001 (an older or newer tasks/)
    TOOL_CONTROL_DIR = Path(f"/tmp/doit-stages-{os.getuid()}")
finally:
    sys.path.remove(str(REPO))

INI = """\
[project]
name = bench
source = {source}
deploy_root = /srv/bench
build = {build}
ssh_config = {ssh_config}
keep_releases = 3
shared_dirs = media
stage_dirs = cache
{extra}
[stage:test]
hosts = {hosts}

[stage:staging]
hosts = {hosts}
promote_from = test

[stage:prod]
hosts = {hosts}
link = sites/current
promote_from = staging
"""

# (label, doit command, what must have run: None = anything; else the only nodes whose action may run)
OPS = [
    ("deploy:test cold", "deploy:test", None),
    ("deploy:test no-op", "deploy:test", {"verify:test"}),
    ("deploy:test no-op, new SSH", "deploy:test", {"verify:test"}),
    ("verify:test alone", "verify:test", {"verify:test"}),
    ("status", "status", {"status"}),
    ("promote:staging", "promote:staging", None),
    ("promote:prod", "promote:prod", None),
    ("promote:prod no-op", "promote:prod", {"verify:prod"}),
]


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------------------- other work on the box

class ForeignLoad:
    """CPU seconds used on this machine by processes that are not this bench's, sampled every 0.5 s as
    (user + nice + system time of /proc/stat) - (this process tree's time, reaped children included) -
    (SSH masters, "ssh: ... [mux]", which detach from whoever started them) - (kernel threads). Others' test
    runs on a shared machine make a figure slower; the table marks where that happened. Approximate: the
    time of a process that exits unreaped between two samples counts as someone else's."""

    def __init__(self):
        import threading
        self.me = os.getpid()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.total = 0.0
        self._last: int | None = None
        self._followed: dict[int, int] = {}
        self._ended = 0
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._sample()
        self._thread.start()

    def _sample(self) -> None:
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = int(cpu[0]) + int(cpu[1]) + int(cpu[2])      # user, nice, system: what processes use
        procs = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
                f = raw[raw.rindex(")") + 2:].split()
                mux = raw.startswith(f"{entry} (ssh)") and b"[mux]" in Path(f"/proc/{entry}/cmdline").read_bytes()
                procs[int(entry)] = (int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]), mux)
            except (OSError, ValueError, IndexError):
                continue
        ours, todo = set(), [self.me]
        children: dict[int, list[int]] = {}
        for pid, (ppid, *_) in procs.items():
            children.setdefault(ppid, []).append(pid)
        while todo:
            pid = todo.pop()
            if pid not in ours:
                ours.add(pid)
                todo += children.get(pid, [])
        mine = sum(own + reaped for pid, (_, own, reaped, _) in procs.items() if pid in ours)
        # masters and kernel threads are followed one by one, so that one ending does not look like
        # someone else's work (its time would leave the sum while staying in /proc/stat)
        now = {pid: own for pid, (ppid, own, _, is_mux) in procs.items()
               if (is_mux and pid not in ours) or pid == 2 or ppid == 2}
        for pid, own in self._followed.items():
            if pid not in now:
                self._ended += own
        self._followed = now
        value = busy - mine - sum(now.values()) - self._ended
        with self._mutex:
            if self._last is not None:
                self.total += max(0, value - self._last) / self.tick
            self._last = value

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def read(self) -> float:
        self._sample()
        with self._mutex:
            return self.total

    def stop(self) -> None:
        self._stop.set()


FOREIGN: ForeignLoad | None = None


def wait_quiet(max_wait: float, threshold: float = 0.1) -> None:
    """Wait (up to max_wait s) until other processes use less than `threshold` CPU over 2 s."""
    if FOREIGN is None or max_wait <= 0:
        return
    deadline, said = time.monotonic() + max_wait, False
    while True:
        f0 = FOREIGN.read()
        time.sleep(2)
        rate = (FOREIGN.read() - f0) / 2
        if rate < threshold:
            return
        if time.monotonic() > deadline:
            print(f"  the machine is still busy ({rate:.2f} CPU used by others); measuring anyway", flush=True)
            return
        if not said:
            print(f"  waiting for the machine to be quiet ({rate:.2f} CPU used by others) ...", flush=True)
            said = True


# ----------------------------------------------------------------------------------------- the hosts

def close_masters(hosts, ssh_config: Path) -> None:
    """Close the SSH master connections to these hosts, the tool's (tasks/transport.py) and the
    harness's / testinfra's (ssh_config), so the next run starts without any."""
    for h in hosts:
        for path in (f"{TOOL_CONTROL_DIR}/%C", None):
            argv = ["ssh", "-F", str(ssh_config)]
            if path:
                argv += ["-o", f"ControlPath={path}"]
            argv += ["-O", "exit", "-p", str(h.port), "127.0.0.1"]
            subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=10)


def check_local_only(hosts, ssh_config: Path, ini: str) -> None:
    """Refuse to run unless every address the tool can reach is 127.0.0.1."""
    for h in hosts:
        if not h.url.startswith(f"ssh://{h.hosts.user}@127.0.0.1:"):
            raise BenchError(f"host {h.name} is {h.url}, not on 127.0.0.1")
    configs = [ssh_config]
    while configs:
        path = configs.pop()
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(HostName|ProxyCommand|ProxyJump|LocalCommand|Include)\s+(\S+)", line, re.I)
            if m and m.group(1).lower() == "include":
                configs.append(Path(m.group(2)))
            elif m and (m.group(1).lower() != "hostname" or m.group(2) != "127.0.0.1"):
                raise BenchError(f"{path}: {line.strip()!r} could leave 127.0.0.1")
    for m in re.finditer(r"ssh://[^@\s,]+@([^:\s,]+)", ini):
        if m.group(1) != "127.0.0.1":
            raise BenchError(f"stages.ini names host {m.group(1)}")
    for m in re.finditer(r"health_url\s*=\s*(\S*)", ini):
        if m.group(1) and not re.match(r"https?://(\{host\}|127\.0\.0\.1)[:/]", m.group(1)):
            raise BenchError(f"stages.ini has health_url {m.group(1)}: not {{host}} (127.0.0.1) nor 127.0.0.1")


# --------------------------------------------------------------------------------------- wheelhouse

def find_wheels(explicit: str | None, dest: Path) -> Path | None:
    """A directory of wheels that satisfies examples/blog/requirements.txt without any index: --wheels,
    else a wheelhouse the tool built here before (build/wheels-*.tar of the demo or the tests)."""
    want = (REPO / "examples" / "blog" / "requirements.txt").read_bytes()
    if explicit:
        return Path(explicit).resolve()
    candidates = sorted(REPO.glob("build/wheels-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for tar in candidates:
        try:
            with tarfile.open(tar) as t:
                member = t.extractfile("requirements.txt")
                if member is None or member.read() != want:
                    continue
                dest.mkdir(parents=True, exist_ok=True)
                for m in t.getmembers():
                    if m.isfile() and m.name.endswith(".whl") and "/" not in m.name:
                        t.extract(m, dest)
            return dest
        except (tarfile.TarError, KeyError, OSError):
            continue
    for d in sorted(REPO.glob(".demo/srv/.deploy/wheels/*/")):
        if (d / "requirements.txt").is_file() and (d / "requirements.txt").read_bytes() == want:
            return d
    return None


# --------------------------------------------------------------------------------------------- runs

class Workdir:
    """One project directory: stages.ini, doit's dep file and build/ (fresh for every sequence)."""

    def __init__(self, path: Path, source: Path, hosts, ssh_config: Path, build: str, parallel: int | None,
                 wheels: Path | None, extra: str = "", prod_extra: str = ""):
        """extra: more [project] lines; prod_extra: more [stage:prod] lines."""
        self.path = path
        path.mkdir(parents=True)
        extra = (f"parallel = {parallel}\n" if parallel else "") + extra
        self.ini_text = INI.format(source=source, build=build, ssh_config=ssh_config, extra=extra,
                                   hosts=", ".join(h.url for h in hosts)) + prod_extra
        check_local_only(hosts, ssh_config, self.ini_text)
        (path / "stages.ini").write_text(self.ini_text)
        self.env = dict(os.environ, STAGES_INI=str(path / "stages.ini"), PIP_NO_INDEX="1",
                        PIP_DISABLE_PIP_VERSION_CHECK="1")
        self.env.pop("DEPLOY_REVISION", None)
        if wheels is not None:
            self.env["PIP_FIND_LINKS"] = str(wheels)
        else:
            self.env.pop("PIP_FIND_LINKS", None)
        self.runs = 0

    def doit(self, command: str, wrapper: list[str] | None = None, profile: Path | None = None,
             python_opts: tuple[str, ...] = (), on_done=None) -> tuple[float, dict, subprocess.CompletedProcess]:
        """Run `doit <command>` (through the probe); (wall seconds, probe data, the process)."""
        self.runs += 1
        out = self.path / f"probe-{self.runs}.json"
        env = dict(self.env, BENCH_PROBE_OUT=str(out), BENCH_PROBE_LAUNCHED=repr(time.time()))
        if profile:
            env["BENCH_PROBE_PROFILE"] = str(profile)
        argv = [*(wrapper or []), sys.executable, *python_opts, str(PROBE), "-f", str(DODO), command]
        log_out, log_err = self.path / f"out-{self.runs}.txt", self.path / f"err-{self.runs}.txt"
        foreign0 = FOREIGN.read() if FOREIGN else 0.0
        with open(log_out, "w") as fo, open(log_err, "w") as fe:
            t = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=self.path, env=env, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
            if on_done is None:
                # a blocking wait: Popen.wait(timeout=...) polls with sleeps that grow to 50 ms, so every
                # wall time would be rounded up to the next 50 ms (one round trip at the WAN bench's delay)
                killer = threading.Timer(900, proc.kill)
                killer.start()
                try:
                    proc.wait()
                finally:
                    killer.cancel()
            else:
                # under strace -f the run ends only when every traced process has, and the SSH masters
                # (ControlPersist) would keep it 60 s longer: close them once doit itself is done
                deadline = time.monotonic() + 900
                while proc.poll() is None and _read_json(out) is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                on_done()
                proc.wait(timeout=120)
            wall = time.perf_counter() - t
        self.foreign = (FOREIGN.read() if FOREIGN else 0.0) - foreign0
        res = subprocess.CompletedProcess(argv, proc.returncode, log_out.read_text(), log_err.read_text())
        if res.returncode != 0:
            raise BenchError(f"doit {command} exited {res.returncode} in {self.path}:\n{res.stdout[-3000:]}\n"
                             f"{res.stderr[-3000:]}")
        return wall, _read_json(out) or {}, res


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ran_nodes(probe: dict) -> set[str]:
    """The nodes whose action ran (not up to date), without the group tasks (deploy:x, promote:x)."""
    return {name for name, n in probe.get("nodes", {}).items()
            if n["run_s"] > 0 and not name.startswith(("deploy:", "promote:", "("))}


def sequence(args, hosts_all, n: int, build: str, rep: int, base: Path, source: Path, wheels) -> list[dict]:
    hosts = list(hosts_all)[:n]
    ssh_config = hosts_all.ssh_config
    for h in hosts:
        h.start()
        h.wipe()
    close_masters(hosts, ssh_config)
    work = Workdir(base / f"work-{build}-{n}-{rep}", source, hosts, ssh_config, build, args.parallel, wheels)
    rows = []
    for label, command, allowed in OPS:
        if label.endswith("new SSH"):
            close_masters(hosts, ssh_config)
        wall, probe, res = work.doit(command)
        ran = ran_nodes(probe)
        if allowed is not None and not ran <= allowed:
            raise BenchError(f"{label} on {n} host(s): expected only {sorted(allowed)} to run, but "
                             f"{sorted(ran)} ran:\n{res.stdout}")
        if label == "deploy:test cold":
            links = {os.readlink(h.path("/srv/bench/sites/test")) for h in hosts}
            if len(links) != 1:
                raise BenchError(f"after the cold deploy the hosts disagree: {links}")
        rows.append({"op": label, "build": build, "n": n, "rep": rep, "wall": wall, "probe": probe,
                     "foreign_cpu_s": work.foreign})
        rss = probe.get("rss_self_kb", 0) / 1024
        print(f"  {build:4} N={n:<3} #{rep + 1} {label:28} {wall:7.2f} s   rss {rss:6.1f} MiB   "
              f"other processes {work.foreign:5.2f} CPU-s", flush=True)
    if not args.keep:
        shutil.rmtree(work.path, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------------ audit, profile

def audit_network(args, hosts_all, base: Path, source: Path, wheels, n: int, build: str) -> str:
    """One cold deploy (+ its no-op rerun) under strace: every inet connect() of every process of the run
    must go to 127.0.0.1 or ::1."""
    if not shutil.which("strace"):
        return "network audit skipped: strace is not installed"
    hosts = list(hosts_all)[:n]
    for h in hosts:
        h.wipe()
    close_masters(hosts, hosts_all.ssh_config)
    work = Workdir(base / f"audit-{build}-{n}", source, hosts, hosts_all.ssh_config, build, args.parallel, wheels)
    trace = base / f"audit-{build}-{n}.strace"
    seen: dict[str, int] = {}
    bad: list[str] = []
    for i in range(2):
        work.doit("deploy:test", wrapper=["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg",
                                            "-o", f"{trace}.{i}"],
                  on_done=lambda: close_masters(hosts, hosts_all.ssh_config))
        for line in Path(f"{trace}.{i}").read_text(errors="replace").splitlines():
            m = re.search(r"sa_family=AF_INET6?,.*?(inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")", line)
            if not m:
                continue
            addr = m.group(2) or m.group(3)
            port = re.search(r"sin6?_port=htons\((\d+)\)", line)
            key = f"{addr}:{port.group(1) if port else '?'}"
            seen[key] = seen.get(key, 0) + 1
            if addr not in ("127.0.0.1", "::1"):
                bad.append(line.strip())
    if bad:
        raise BenchError("the run connected outside 127.0.0.1:\n" + "\n".join(bad[:20]))
    ports = {h.port for h in hosts}
    other = sorted(k for k in seen if int(k.rsplit(":", 1)[1] or 0) not in ports) if seen else []
    return (f"network audit ({build}, N={n}, cold deploy + no-op rerun under strace -f -e "
            f"connect,sendto,sendmsg,sendmmsg): {sum(seen.values())} inet connect()/send calls, all to 127.0.0.1"
            + (f" (to ports other than the hosts': {', '.join(other)})" if other else "")
            + f", {len(ports)} host port(s)")


WHAT_IF = [  # (label, environment of the doit process, parallel = N)
    ("as is", {}, False),
    ("plumbum session closed without its 50 ms sleep", {"BENCH_PROBE_WHATIF": "nosleep"}, False),
    ("parallel = N (every host at once)", {}, True),
    ("both", {"BENCH_PROBE_WHATIF": "nosleep"}, True),
]


def what_if(args, hosts_all, base: Path, source: Path, n: int) -> str:
    """The same cold deploy and no-op rerun with changes the tool does not have (bench/_doit_probe.py
    patches them in at run time; parallel is a config key)."""
    hosts = list(hosts_all)[:n]
    results: dict[str, dict[str, list[float]]] = {}
    noisy: set[tuple[str, str]] = set()
    for rep in range(args.what_if_repeat):
        for i, (label, env, all_at_once) in enumerate(WHAT_IF):
            wait_quiet(args.wait_quiet)
            for h in hosts:
                h.wipe()
            close_masters(hosts, hosts_all.ssh_config)
            work = Workdir(base / f"whatif-{n}-{rep}-{i}", source, hosts, hosts_all.ssh_config, "none",
                           n if all_at_once else args.parallel, None)
            work.env.update(env)
            for op in ("deploy:test cold", "deploy:test no-op"):
                wall, _, _ = work.doit("deploy:test")
                results.setdefault(label, {}).setdefault(op, []).append(wall)
                if work.foreign > NOISY_SHARE * wall:
                    noisy.add((label, op))
                print(f"  what-if N={n} #{rep + 1} {label:48} {op:18} {wall:6.2f} s   other processes "
                      f"{work.foreign:5.2f} CPU-s", flush=True)
            if not args.keep:
                shutil.rmtree(work.path, ignore_errors=True)
    lines = [f"| what if (N={n}, build=none) | `deploy:test cold` | `deploy:test no-op` |", "| --- | ---: | ---: |"]
    for label, *_ in WHAT_IF:
        cells = [fmt(results[label][op]) + (" †" if (label, op) in noisy else "")
                 for op in ("deploy:test cold", "deploy:test no-op")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def ssh_primitives(hosts_all, count: int = 15) -> str:
    """What one round trip costs, on one host, with the tool's own ssh options (tasks/transport.py)."""
    sys.path.insert(0, str(REPO))
    from plumbum import SshMachine

    from doit_stages.transport import ssh_options
    h = list(hosts_all)[0]
    opts = ssh_options(hosts_all.ssh_config)
    ssh = ["ssh", *opts, "-p", str(h.port), f"{hosts_all.user}@127.0.0.1"]

    def ms(fn, n=count, before=None):
        out = []
        for _ in range(n):
            if before:
                before()
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
        return statistics.median(out)

    def run(argv):
        subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    rows = []
    rows.append(("`ssh host true`, no master connection (full handshake; ControlMaster=auto starts one)",
                 ms(lambda: run([*ssh, "true"]), before=lambda: close_masters([h], hosts_all.ssh_config))))
    run([*ssh, "true"])
    rows.append(("`ssh host true` through the master connection", ms(lambda: run([*ssh, "true"]))))
    rows.append(("`ssh host sh -c ...` (a typical step script) through the master",
                 ms(lambda: run([*ssh, "sh -c 'cat /srv/bench/.deploy/lock/owner.json 2>/dev/null; true'"]))))

    def machine():
        m = SshMachine("127.0.0.1", user=hosts_all.user, port=h.port, ssh_opts=opts, scp_opts=opts)
        return m
    rows.append(("plumbum `SshMachine(...)` + `close()` (ssh /bin/sh session, uname, env -0): one `connect()`",
                 ms(lambda: machine().close())))
    m = machine()
    try:
        def popen():
            m.popen(["true"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE).communicate()
        popen()                                      # cwd (pwd) is looked up once per machine
        rows.append(("`machine.popen(argv)` (what `Transport.call` does): a new ssh process per command",
                     ms(popen)))
        rows.append(("`machine.session().run(...)`-style: a command on the already open shell session",
                     ms(lambda: m._session.run("true"))))
        rows.append(("`scp` of a 4 KiB file (`machine.upload`)",
                     ms(lambda: m.upload(str(REPO / "dodo.py"), "/tmp/bench-upload-probe"))))
    finally:
        m.close()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pytest, testinfra, testinfra.backend.ssh"], check=True)
    imp = (time.perf_counter() - t) * 1000
    rows.append(("`python -c 'import pytest, testinfra'` (start of every verify)", imp))
    lines = ["| one round trip, host 127.0.0.1 | ms (median) |", "| --- | ---: |"]
    lines += [f"| {what} | {v:.1f} |" if v >= 1 else f"| {what} | {v:.2f} |" for what, v in rows]
    return "\n".join(lines)


def profile_run(args, hosts_all, base: Path, source: Path, wheels, n: int) -> str:
    """cProfile of one cold deploy at N (main thread), plus -X importtime of the start-up."""
    import io
    import pstats
    hosts = list(hosts_all)[:n]
    for h in hosts:
        h.wipe()
    close_masters(hosts, hosts_all.ssh_config)
    work = Workdir(base / f"profile-{n}", source, hosts, hosts_all.ssh_config, "none", args.parallel, wheels)
    prof = BENCH / f"profile-cold-deploy-n{n}.prof"
    wall, probe, _ = work.doit("deploy:test", profile=prof)
    s = io.StringIO()
    st = pstats.Stats(str(prof), stream=s)
    st.sort_stats("cumulative").print_stats(30)
    st.sort_stats("tottime").print_stats(15)
    # import cost of the start-up (doit list opens no connection)
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "-f", str(DODO), "list"],
                         cwd=work.path, env=work.env, capture_output=True, text=True)
    imports = []
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 2:          # top-level imports only
            imports.append((int(m.group(2)), m.group(4)))
    imports.sort(reverse=True)
    total_imports = sum(us for us, _ in imports)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "list"], cwd=work.path, env=work.env,
                   capture_output=True)
    list_wall = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
    bare = time.perf_counter() - t
    text = [f"cold deploy:test at N={n} under cProfile: {wall:.2f} s wall (profile: {prof.relative_to(REPO)})",
            "", "```", s.getvalue().strip(), "```", "",
            f"`doit list` (start-up only, no connection): {list_wall:.2f} s wall; bare `python -c pass`: "
            f"{bare:.2f} s; top-level imports (-X importtime, cumulative): {total_imports / 1e6:.2f} s:", ""]
    text += [f"    {us / 1e3:7.1f} ms  {name}" for us, name in imports[:12]]
    out = BENCH / f"profile-cold-deploy-n{n}.txt"
    out.write_text("\n".join(text) + "\n")
    return "\n".join(text)


# ----------------------------------------------------------------------------------------- reporting

def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(values):.2f}–{max(values):.2f})"


NOISY_SHARE = 0.25     # other processes used more than a quarter of a CPU on average during the run


def noisy_run(r: dict) -> bool:
    return r.get("foreign_cpu_s", 0) > NOISY_SHARE * r["wall"]


def table(rows: list[dict]) -> str:
    builds = sorted({r["build"] for r in rows}, key=["none", "pip"].index)
    ns = sorted({r["n"] for r in rows})
    cols = [(b, n) for b in builds for n in ns if any(r["build"] == b and r["n"] == n for r in rows)]
    head = ["operation"] + [f"{n} host{'s' if n > 1 else ''}, build={b}" for b, n in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([" --- "] + [" ---: "] * len(cols)) + "|"]
    for label, _, _ in OPS:
        cells = []
        for b, n in cols:
            mine = [r for r in rows if r["op"] == label and r["build"] == b and r["n"] == n]
            noisy = any(noisy_run(r) for r in mine)
            cells.append(fmt([r["wall"] for r in mine]) + (" †" if noisy else ""))
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    rss = []
    for b, n in cols:
        cold = [r["probe"] for r in rows if r["op"] == "deploy:test cold" and r["build"] == b and r["n"] == n]
        if cold:
            rss.append(f"{max(p.get('rss_self_kb', 0) for p in cold) / 1024:.0f} / "
                       f"{max(p.get('rss_children_kb', 0) for p in cold) / 1024:.0f}")
        else:
            rss.append("—")
    lines.append("| peak RSS of a cold deploy, MiB: doit process / largest child | " + " | ".join(rss) + " |")
    return "\n".join(lines)


NODE_ORDER = ["(startup)", "archive", "upload:test", "build:test", "switch:test", "verify:test", "deploy:test"]


ABBREV = {"ssh session": "S", "ssh command": "C", "scp": "scp", "ssh control": "ctl"}


def per_host_text(per_host: dict) -> str:
    """{port: {phase: {kind: count}}} -> 'check 1S+1C, run 2S+9C+1scp' (range over hosts when they differ)."""
    phases: dict[str, dict[str, list[int]]] = {}
    for by_phase in per_host.values():
        for phase, kinds in by_phase.items():
            for k, v in kinds.items():
                phases.setdefault(phase, {}).setdefault(k, []).append(v)
    parts = []
    for phase in ("check", "run", "between", "exit", "startup"):
        if phase not in phases:
            continue
        kinds = phases[phase]
        parts.append(("" if phase in ("exit", "startup") else phase + " ") + "+".join(
            f"{min(v)}" + (f"–{max(v)}" if max(v) != min(v) else "") + ABBREV.get(k, k)
            for k, v in sorted(kinds.items(), key=lambda kv: list(ABBREV).index(kv[0]) if kv[0] in ABBREV else 9)))
    return ", ".join(parts)


def breakdown(rows: list[dict], build: str, op: str = "deploy:test cold") -> str:
    """Per node of one operation, per N: median seconds (check + action) and ssh processes per host."""
    ns = sorted({r["n"] for r in rows if r["build"] == build and r["op"] == op})
    if not ns:
        return ""
    head = ["node"] + [f"N={n}: s (check + run)" for n in ns] + [f"N={n}: processes per host" for n in ns]
    align = [" --- "] + [" ---: "] * len(ns) + [" --- "] * len(ns)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    probes = {n: [r["probe"] for r in rows if r["build"] == build and r["op"] == op and r["n"] == n] for n in ns}
    names = []
    for n in ns:
        for p in probes[n]:
            for name in p.get("nodes", {}):
                if name not in names and not name.startswith("("):
                    names.append(name)
    names.sort(key=lambda x: NODE_ORDER.index(x) if x in NODE_ORDER else len(NODE_ORDER))
    for name in ["(startup)", *names, "(exit)"]:
        times, procs = [], []
        for n in ns:
            ps = probes[n]
            if name == "(startup)":
                vals = [p.get("boot_s", 0) + p.get("startup_s", 0) for p in ps]
                times.append(f"{statistics.median(vals):.2f}")
            elif name == "(exit)":
                vals = [p.get("exit_s", 0) for p in ps]
                times.append(f"{statistics.median(vals):.2f}")
            else:
                c = [p["nodes"].get(name, {}).get("check_s", 0) for p in ps]
                r = [p["nodes"].get(name, {}).get("run_s", 0) for p in ps]
                times.append(f"{statistics.median(c):.2f} + {statistics.median(r):.2f}")
            node = ps[0].get("nodes", {}).get(name, {})
            desc = per_host_text(node.get("hosts", {}))
            local = {k: v for k, v in node.get("spawns", {}).items() if not k.startswith(("ssh", "scp"))}
            if local:
                desc += ("; " if desc else "") + "local: " + ", ".join(f"{k} {v}" for k, v in sorted(local.items()))
            procs.append(desc or "—")
        lines.append(f"| `{name}` | " + " | ".join(times) + " | " + " | ".join(procs) + " |")
    return "\n".join(lines)


def code_digest() -> str:
    """A digest of the code the bench runs (tasks/, infra-tests/, dodo.py), blind to whitespace."""
    import hashlib
    h = hashlib.sha1()
    for f in sorted([*REPO.glob("tasks/**/*.py"), *REPO.glob("infra-tests/*.py"), REPO / "dodo.py"]):
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + re.sub(rb"\s+", b"", f.read_bytes()))
    return h.hexdigest()[:8]


def code_state() -> str:
    """The commit, whether what the bench runs has uncommitted changes (others edit tasks/), the digest."""
    paths = ["tasks", "dodo.py", "infra-tests"]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], capture_output=True, text=True,
                           cwd=REPO).stdout.strip()
    return f"{head}{' + uncommitted changes' if dirty else ''} (code digest {code_digest()})"


CODE_AT_START = code_state()


def machine_facts(args) -> list[str]:
    def cmd(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return "?"
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), "0")
    now = code_state()
    changed = code_digest() != CODE_AT_START.rsplit(" ", 1)[1].rstrip(")")
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    import doit
    import plumbum
    return [
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} CPUs (nproc {cmd('nproc')}), {model}, {int(mem) // 1024} MiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"- python {platform.python_version()} (deployer); doit {doit.__version__}, plumbum {plumbum.__version__}, "
        f"{ssh_v}",
        f"- doit-stages at {now}"
        + (f" — WARNING: the code changed during the run (it began at {CODE_AT_START}), so the figures "
           "mix two versions" if changed else ""),
        f"- repeats: {args.what_if_repeat if args.what_if and not ints(args.hosts) else args.repeat}; "
        f"[project] parallel = {args.parallel or '10 (default)'}; load average when written: "
        f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])} (the bench itself loads the CPUs; other "
        "work on the machine shows as a wide min–max)",
    ]


def write_results(args, rows, notes: list[str]) -> str:
    doc = ["# doit-stages benchmark", "",
           "`.venv/bin/python bench/bench_deploy.py " + " ".join(sys.argv[1:]) + "` (as root). Every figure is the "
           "wall-clock time of one `doit` process, in seconds: median (min–max) over the repeats. Every host is in "
           "every stage; stages are code-only (no database: no backup, restore or migrate nodes). Hosts are sshd "
           "processes on 127.0.0.1, each in its own mount namespace (tests/lab/sshd.py), so this measures the tool "
           "and OpenSSH, not a network.", "",
           *machine_facts(args), "", table(rows), ""]
    foreign = sum(r.get("foreign_cpu_s", 0) for r in rows)
    measured = sum(r["wall"] for r in rows)
    noisy = sum(1 for r in rows if noisy_run(r))
    doc += [f"Other work on the machine: processes outside the bench used {foreign:.0f} CPU-s during the "
            f"{measured:.0f} s of timed runs; {noisy} of {len(rows)} runs had more than {NOISY_SHARE} CPU of it "
            "on average (marked †: their figures are slower than the tool alone would be).", ""]
    doc += ["What each row is: `deploy:test cold` = fresh hosts, fresh workdir, no SSH master connection: archive, "
            "upload, build, switch, verify. `no-op` = every node up to date, only verify runs (right after, with "
            "the SSH master connections of the previous run still up; `new SSH`: after closing them). "
            "`promote:*` = the release the source stage runs, already on the hosts (same hosts in every stage): "
            "upload up to date, stage-level build, switch, verify. `build=pip` adds `pip wheel` on the deployer "
            "(local wheels, no index) and a venv + `pip install --no-index` on every host.", ""]
    for build in ("none", "pip"):
        b = breakdown(rows, build)
        if b:
            doc += [f"Where the time of a cold `deploy:test` goes (build={build}; median seconds of the up-to-date "
                    "check + the action; processes started per host, by kind):", "", b, ""]
    b = breakdown(rows, "none", "deploy:test no-op")
    if b:
        doc += ["Same for the no-op rerun (build=none):", "", b, ""]
    doc += notes
    text = "\n".join(doc).rstrip() + "\n"
    (BENCH / "results.md").write_text(text)
    (BENCH / "results.json").write_text(json.dumps(rows, indent=1))
    return text


# ---------------------------------------------------------------------------------------------- main

def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="1,5,25", help="host counts for build = none (default 1,5,25; '' for none)")
    ap.add_argument("--pip-hosts", default="1,5", help="host counts for build = pip (default 1,5; '' for none)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=None, help="[project] parallel (default: the tool's, 10)")
    ap.add_argument("--wheels", help="a directory of wheels for examples/blog/requirements.txt")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile one cold deploy at N=5 (bench/profile-cold-deploy-n5.txt)")
    ap.add_argument("--what-if", action="store_true",
                    help="also time cold deploy + no-op with speed-ups patched in (bench/whatif.md)")
    ap.add_argument("--what-if-hosts", default="5,25")
    ap.add_argument("--what-if-repeat", type=int, default=2)
    ap.add_argument("--wait-quiet", type=float, default=60,
                    help="before each sequence, wait up to this many seconds for other processes to go quiet")
    ap.add_argument("--retries", type=int, default=1,
                    help="redo a sequence that other processes slowed down, up to this many times")
    ap.add_argument("--no-audit", action="store_true", help="skip the strace network audit")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (workdirs, probe JSON, logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: the fake hosts need unshare -m, mount --bind and sshd", file=sys.stderr)
        return 2
    none_ns, pip_ns = ints(args.hosts), ints(args.pip_hosts)
    whatif_ns = ints(args.what_if_hosts) if args.what_if else []
    global FOREIGN
    FOREIGN = ForeignLoad()
    base = Path(tempfile.mkdtemp(prefix="dst-bench-"))
    os.chmod(base, 0o755)
    hosts = None
    notes: list[str] = []
    started = time.perf_counter()
    try:
        repo = AppRepo(base / "app", scm="git")
        wheels = find_wheels(args.wheels, base / "wheels") if pip_ns else None
        if pip_ns and wheels is None:
            notes.append("build = pip skipped: no local wheels for examples/blog/requirements.txt "
                         "(pass --wheels DIR; the bench never asks an index)")
            print(notes[-1], file=sys.stderr)
            pip_ns = []
        maxn = max(none_ns + pip_ns + whatif_ns + ([5] if args.profile else []) + [1])
        print(f"starting {maxn} sshd hosts on 127.0.0.1 ...", flush=True)
        hosts = SshHosts(base / "hosts", names=[f"h{i:02d}" for i in range(1, maxn + 1)])
        rows: list[dict] = []
        for build, ns in (("none", none_ns), ("pip", pip_ns)):
            for n in ns:
                for rep in range(args.repeat):
                    best = None
                    for attempt in range(1 + args.retries):
                        wait_quiet(args.wait_quiet)
                        got = sequence(args, hosts, n, build, rep, base, repo.path, wheels)
                        noise = sum(r["foreign_cpu_s"] for r in got)
                        if best is None or noise < best[0]:
                            best = (noise, got)
                        if not any(noisy_run(r) for r in got):
                            break
                        if attempt < args.retries:
                            print("  other processes slowed that sequence down: once more", flush=True)
                    rows += best[1]
        if rows and not args.no_audit:
            notes.append(audit_network(args, hosts, base, repo.path, wheels, min(5, maxn),
                                       "pip" if pip_ns else "none"))
            print(notes[-1], flush=True)
        if whatif_ns:
            tables = [what_if(args, hosts, base, repo.path, n) for n in whatif_ns]
            doc = ["# doit-stages: what if", "",
                   "`.venv/bin/python bench/bench_deploy.py " + " ".join(sys.argv[1:]) + "`. The cold `deploy:test` "
                   "and its no-op rerun of bench/results.md (build = none, code-only stages, fresh hosts, no SSH "
                   "master at the start), with changes the tool does not have: patched in at run time by "
                   "bench/_doit_probe.py (BENCH_PROBE_WHATIF=nosleep) or set in stages.ini "
                   "(`parallel`). tasks/ and infra-tests/ are unchanged. "
                   "Seconds, "
                   f"median (min–max) of {args.what_if_repeat} runs.", "", *machine_facts(args), ""]
            for t in tables:
                doc += [t, ""]
            doc += ["- *plumbum session closed without its 50 ms sleep*: plumbum's `ShellSession.close()` sleeps "
                    "0.05 s, and every `SSHTransport` (an `SshMachine`) has one such session: what a transport of "
                    "plain ssh/scp processes, without plumbum's shell session, would save.",
                    "- *parallel = N*: `[project] parallel` set to the number of hosts (default 10).",
                    "- †: other processes on the machine used more than a quarter CPU during a run of that cell."]
            (BENCH / "whatif.md").write_text("\n".join(doc) + "\n")
            print("\n".join(doc), flush=True)
        sections: list[str] = []
        if rows:
            prims = ssh_primitives(hosts)
            print(prims, flush=True)
            sections += ["", "What the SSH primitives cost here (one host, the tool's own ssh options from "
                         "tasks/transport.py):", "", prims]
        if args.profile:
            print(profile_run(args, hosts, base, repo.path, wheels, 5), flush=True)
            sections += ["", "A cProfile of one cold deploy at N=5 and the start-up's import times: "
                         "bench/profile-cold-deploy-n5.txt (.prof beside it)."]
        if rows:
            text = write_results(args, rows, [f"- {x}" for x in notes] + sections + [
                "", f"One full run of the bench took {time.perf_counter() - started:.0f} s."])
            print()
            print(text)
        return 0
    except (BenchError, HarnessError) as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    finally:
        if hosts is not None:
            try:
                close_masters(list(hosts), hosts.ssh_config)
            except Exception:
                pass
            try:
                hosts.stop()
            except Exception as e:
                print(f"stopping the hosts: {e}", file=sys.stderr)
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
