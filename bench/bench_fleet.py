#!/usr/bin/env python3
"""doit-stages against pyinfra 3 on the same fake hosts, in the same run, interleaved.

    .venv/bin/python bench/bench_fleet.py [--hosts 1,16] [--repeat 3] [--baseline REV] [--fast-kex-too] [--cpu]

Run as root (tests/lab/sshd.py: one sshd per host on 127.0.0.1, each in its own mount namespace). pyinfra
is installed with pip into its own venv (build/pyinfra-venv) on first use.

What is timed (wall seconds of the whole process, start-up included):
  ours cold      `doit deploy:test` of a code-only stage (build = none): archive, upload, build, switch,
                 verify (testinfra); fresh hosts, fresh workdir, no SSH master connection
  ours no-op     the same again, every node up to date (verify runs); SSH masters closed first
  pyinfra cold   `pyinfra -y inventory.py deploy.py`: files.put of the same tarball, unpack (server.shell,
                 tar -xzf into releases/<id>), files.link sites/test; fresh hosts
  pyinfra no-op  the same again (put and link find nothing to do; the unpack command runs and skips)
  baseline       (--baseline REV) the same as "ours" with the tool as it was at git revision REV (its tree
                 exported to a temporary directory and imported as doit_stages ahead of this checkout's),
                 to show what a change gained, measured in the same run
Each repeat runs ours and pyinfra's (and the baseline's) back to back (the order rotates), and the ratio is
taken pair by pair: the machine may be shared, and pairing keeps the ratio meaningful when its speed
drifts. Medians over the repeats. Also counted: sshd's "Accepted publickey" lines per host per run.
--fast-kex-too also times ours with ssh_fast_kex = yes (curve25519 first: pyinfra's key exchange), in the
same rotation. --cpu also counts each run's CPU seconds on the deploying machine's side and on the hosts' side
(bench/cpu_account.py), and one bare SSH login's: on this lab the hosts share the deployer's CPUs.
--write puts the table into bench/results.md (between the fleet markers) and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                  # the tests' lab: tests.lab
sys.path.insert(0, str(REPO / "bench"))

import cpu_account  # noqa: E402
from bench_deploy import check_local_only, close_masters  # noqa: E402

from tests.lab.apprepo import AppRepo  # noqa: E402
from tests.lab.sshd import SshHosts  # noqa: E402

WHEELS = Path("/nonexistent")   # set from --wheels
CPU = False                      # set from --cpu
PYINFRA_VENV = REPO / "build" / "pyinfra-venv"
RESULTS = REPO / "bench" / "results.md"
MARK_BEGIN, MARK_END = "<!-- fleet: begin -->", "<!-- fleet: end -->"

INI = """\
[project]
name = bench
source = {source}
deploy_root = /srv/bench
build = {build}
ssh_config = {ssh_config}
keep_releases = 3
shared_dirs = media

[stage:test]
hosts = {hosts}
"""

PYINFRA_DEPLOY = '''\
import os
from pyinfra.operations import files, server

ROOT, RID = "/srv/pyi", os.environ["BENCH_RELEASE"]
ART, REL = f"{ROOT}/.deploy/artifacts/{RID}.tar.gz", f"{ROOT}/releases/{RID}"
files.put(name="put the archive", src=os.environ["BENCH_ARCHIVE"], dest=ART, create_remote_dir=True)
server.shell(name="unpack", commands=[
    f"[ -f {REL}/.ready ] || {{ mkdir -p {REL} && tar -xzf {ART} -C {REL} && touch {REL}/.ready; }}"])
files.link(name="link sites/test", path=f"{ROOT}/sites/test", target=f"../releases/{RID}",
           create_remote_dir=True)
'''

PYINFRA_INVENTORY = '''\
import json, os
hosts = [(h["name"], {"ssh_hostname": "127.0.0.1", "ssh_port": h["port"], "ssh_user": h["user"],
                      "ssh_key": h["key"], "ssh_known_hosts_file": h["known_hosts"],
                      "ssh_strict_host_key_checking": "yes"})
         for h in json.loads(os.environ["BENCH_HOSTS"])]
'''


def ensure_pyinfra() -> Path:
    exe = PYINFRA_VENV / "bin" / "pyinfra"
    if not exe.exists():
        print("installing pyinfra 3 into", PYINFRA_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PYINFRA_VENV)], check=True)
        subprocess.run([str(PYINFRA_VENV / "bin" / "pip"), "install", "-q", "pyinfra>=3,<4"], check=True)
    return exe


def accepted(hosts) -> list[int]:
    return [h.log.read_text(errors="replace").count("Accepted publickey") for h in hosts]


def timed(argv, cwd: Path, env: dict, cpu: dict | None = None, hosts=(), ssh_config: Path | None = None) -> float:
    """The run's wall seconds. With cpu (a dict, --cpu): its CPU seconds go into cpu["deployer"] (the
    process and its ssh clients, masters included) and cpu["hosts"] (the hosts' sshd and all below it);
    the SSH master connections are closed after the run to count them."""
    if cpu is not None:
        c0, h0 = cpu_account.children_cpu(), cpu_account.listener_cpu(hosts)
    t = time.perf_counter()
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         timeout=900)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} exited {res.returncode}:\n{res.stdout[-3000:]}\n"
                         f"{res.stderr[-3000:]}")
    if cpu is not None:
        own = cpu_account.children_cpu() - c0
        close_masters(hosts, ssh_config)            # its own ssh -O exit processes are not counted
        orphans = cpu_account.reap_orphans({h.pid for h in hosts})
        cpu["deployer"] = own + orphans.pop("ssh", 0.0)
        cpu["hosts"] = cpu_account.listener_cpu(hosts) - h0 + sum(orphans.values())
    return wall


def fresh(hosts, ssh_config: Path) -> None:
    close_masters(hosts, ssh_config)
    for h in hosts:
        h.wipe()


def export_baseline(rev: str, dest: Path) -> Path:
    """The tool as it was at git revision rev, in dest/src, importable as doit_stages from dest/pkg (a
    PYTHONPATH entry wins over this checkout's editable install, which Python looks at last)."""
    (dest / "src").mkdir(parents=True)
    (dest / "pkg").mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest / "src")], input=archive, check=True)
    (dest / "pkg" / "doit_stages").symlink_to(dest / "src" / "tasks")
    return dest


def compile_tree(tree: Path) -> None:
    """Bytecode for the tool's modules and checks, as a user's second run has it (pip compiles pyinfra's at
    install): without it, a PYTHONDONTWRITEBYTECODE in the environment makes every run compile the source."""
    for d in ("tasks", "infra-tests"):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / d)], check=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def run_ours(hosts, all_hosts, source: Path, work: Path, tree: Path | None = None,
             extra: str = "") -> tuple[dict, Path]:
    """tree: a baseline from export_baseline (None: this checkout); extra: more [project] lines."""
    work.mkdir(parents=True)
    ini = INI.format(source=source, ssh_config=all_hosts.ssh_config, hosts=", ".join(h.url for h in hosts),
                     build="none").replace("\n[stage:test]", extra + "\n[stage:test]")
    check_local_only(hosts, all_hosts.ssh_config, ini)
    (work / "stages.ini").write_text(ini)
    env = dict(os.environ, STAGES_INI=str(work / "stages.ini"))
    env.pop("DEPLOY_REVISION", None)
    dodo = REPO / "dodo.py"
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "pkg")
        dodo = tree / "src" / "dodo.py"
    argv = [sys.executable, "-m", "doit", "-f", str(dodo), "deploy:test"]
    fresh(hosts, all_hosts.ssh_config)
    before = accepted(hosts)
    out = {"cold_cpu": {}, "noop_cpu": {}} if CPU else {}
    out["cold"] = timed(argv, work, env, out.get("cold_cpu"), hosts, all_hosts.ssh_config)
    out["conns_cold"] = max(a - b for a, b in zip(accepted(hosts), before))
    close_masters(hosts, all_hosts.ssh_config)
    before = accepted(hosts)
    out["noop"] = timed(argv, work, env, out.get("noop_cpu"), hosts, all_hosts.ssh_config)
    out["conns_noop"] = max(a - b for a, b in zip(accepted(hosts), before))
    archive = next((work / "build").glob("*.tar.gz"))
    return out, archive


def run_code_change(hosts, all_hosts, repo: AppRepo, build: str, work: Path, n: int) -> float:
    """A deploy of a code-only change (requirements unchanged) after a first deploy, with `build`."""
    work.mkdir(parents=True)
    ini = INI.format(source=repo.path, ssh_config=all_hosts.ssh_config, hosts=", ".join(h.url for h in hosts),
                     build=build)
    check_local_only(hosts, all_hosts.ssh_config, ini)
    (work / "stages.ini").write_text(ini)
    # wheels only from a local directory (--wheels): no traffic beyond 127.0.0.1 and the local disk
    env = dict(os.environ, STAGES_INI=str(work / "stages.ini"), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(WHEELS))
    env.pop("DEPLOY_REVISION", None)
    argv = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "deploy:test"]
    fresh(hosts, all_hosts.ssh_config)
    timed(argv, work, env)                      # the first deploy (builds the venv with build = pip)
    repo.commit(f"code {build} {n} {work.name}", {"static/version.txt": f"{work.name}\n"})
    close_masters(hosts, all_hosts.ssh_config)
    return timed(argv, work, env)


def run_pyinfra(hosts, all_hosts, exe: Path, archive: Path, work: Path) -> dict:
    work.mkdir(parents=True)
    (work / "deploy.py").write_text(PYINFRA_DEPLOY)
    (work / "inventory.py").write_text(PYINFRA_INVENTORY)
    spec = [{"name": h.name, "port": h.port, "user": all_hosts.user, "key": str(all_hosts.identity),
             "known_hosts": str(all_hosts.known_hosts)} for h in hosts]
    env = dict(os.environ, BENCH_HOSTS=json.dumps(spec), BENCH_ARCHIVE=str(archive),
               BENCH_RELEASE=archive.name[: -len(".tar.gz")])
    argv = [str(exe), "-y", "inventory.py", "deploy.py"]
    fresh(hosts, all_hosts.ssh_config)
    before = accepted(hosts)
    out = {"cold_cpu": {}, "noop_cpu": {}} if CPU else {}
    out["cold"] = timed(argv, work, env, out.get("cold_cpu"), hosts, all_hosts.ssh_config)
    out["conns_cold"] = max(a - b for a, b in zip(accepted(hosts), before))
    before = accepted(hosts)
    out["noop"] = timed(argv, work, env, out.get("noop_cpu"), hosts, all_hosts.ssh_config)
    out["conns_noop"] = max(a - b for a, b in zip(accepted(hosts), before))
    for h in hosts:                                    # it did the work: the link names the release
        link = os.readlink(h.path("/srv/pyi/sites/test"))
        assert link == f"../releases/{env['BENCH_RELEASE']}", link
    return out


def baseline_table(results: dict, counts: list[int], rev: str) -> str:
    lines = [f"This checkout against the tool at {rev} (baseline), same runs; ratio = this / baseline, pair by pair:",
             "", "| hosts | this cold | baseline cold | ratio | this no-op | baseline no-op | ratio |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in counts:
        rs = results[n]
        cells = []
        for key in ("cold", "noop"):
            cells += [f"{statistics.median(r['ours'][key] for r in rs):.2f}",
                      f"{statistics.median(r['baseline'][key] for r in rs):.2f}",
                      f"{statistics.median(r['ours'][key] / r['baseline'][key] for r in rs):.2f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(results: dict, counts: list[int], login: tuple[float, float]) -> str:
    """--cpu: CPU seconds of each side (medians), and what the hosts' own share means on this lab."""
    def med(n, who, key, side):
        return statistics.median(r[who][f"{key}_cpu"][side] for r in results[n])
    one = min(counts)
    lines = ["CPU seconds of one run (medians): the deploying machine's side (the tool's process or pyinfra's, "
             "and their ssh clients) / the hosts' side (each host's sshd and everything under it):", "",
             "| hosts | ours cold | pyinfra cold | ours no-op | pyinfra no-op |", "| ---: | --- | --- | --- | --- |"]
    for n in counts:
        cells = [f"{med(n, who, key, 'deployer'):.2f} / {med(n, who, key, 'hosts'):.2f}"
                 for key in ("cold", "noop") for who in ("ours", "pyinfra")]
        lines.append(f"| {n} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    client, host = login
    lines += ["", f"One bare SSH login (`ssh host true` with the tool's ssh options, no master connection): "
              f"{client * 1000:.0f} ms of CPU in the client + {host * 1000:.0f} ms in the host's sshd."]
    for n in counts:
        if n == one:
            continue
        wall1 = statistics.median(r["ours"]["cold"] for r in results[one])
        budget = 0.5 * wall1 * (os.cpu_count() or 1)
        lines.append(
            f"At {n} hosts, the {n - one} extra logins alone cost {(n - one) * (client + host):.2f} CPU-s: a cold "
            f"run within 1.5x of the {one}-host one ({wall1:.2f} s) has {budget:.2f} CPU-s to spare on these "
            f"{os.cpu_count()} CPUs for all the extra hosts' work, both sides; the extra hosts cost "
            f"{med(n, 'ours', 'cold', 'deployer') - med(one, 'ours', 'cold', 'deployer'):.2f} CPU-s here and "
            f"{med(n, 'ours', 'cold', 'hosts') - med(one, 'ours', 'cold', 'hosts'):.2f} CPU-s on the hosts.")
    return "\n".join(lines)


def kex_table(results: dict, counts: list[int], logins: dict | None) -> str:
    """--fast-kex-too: ours with OpenSSH's default key exchange, ours with ssh_fast_kex = yes (curve25519
    first, as paramiko: pyinfra's key exchange) and pyinfra, same runs; with --cpu, the deploying machine's
    CPU per extra host and per login."""
    def med(n, who, key):
        return statistics.median(r[who][key] for r in results[n])

    def ratio(n, who, key):
        return statistics.median(r[who][key] / r["pyinfra"][key] for r in results[n])
    lines = ["Key exchange: ours with OpenSSH's default (sntrup761x25519 on OpenSSH 9.x) / ours with "
             "ssh_fast_kex = yes (curve25519, pyinfra's) / pyinfra, seconds (medians; ratios to pyinfra pair by "
             "pair):", "", "| hosts | cold: default / fast / pyinfra | ratio default / fast | no-op: default / fast "
             "/ pyinfra | ratio default / fast |", "| ---: | --- | --- | --- | --- |"]
    for n in counts:
        cells = []
        for key in ("cold", "noop"):
            cells += [f"{med(n, 'ours', key):.2f} / {med(n, 'fast', key):.2f} / {med(n, 'pyinfra', key):.2f}",
                      f"{ratio(n, 'ours', key):.2f} / {ratio(n, 'fast', key):.2f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if CPU and len(counts) > 1:
        one, many = min(counts), max(counts)

        def cpu(n, who, key, side="deployer"):
            return statistics.median(r[who][f"{key}_cpu"][side] for r in results[n])
        lines += ["", f"The deploying machine's CPU per extra host, ms ((CPU at {many} hosts - at {one}) / "
                  f"{many - one}; the process and its ssh clients, masters included), and on the hosts' side:", "",
                  "| run | ours, default kex | ours, ssh_fast_kex | pyinfra |", "| --- | ---: | ---: | ---: |"]
        for key in ("cold", "noop"):
            for side in ("deployer", "hosts"):
                vals = [1000 * (cpu(many, who, key, side) - cpu(one, who, key, side)) / (many - one)
                        for who in ("ours", "fast", "pyinfra")]
                lines.append(f"| {key}, {'deploying machine' if side == 'deployer' else 'hosts'} | "
                             + " | ".join(f"{v:.0f}" for v in vals) + " |")
    if logins:
        lines += [""] + [f"One bare SSH login with the tool's options, {what}: {1000 * c:.0f} ms of CPU in the client "
                         f"+ {1000 * h:.0f} ms in the host's sshd." for what, (c, h) in logins.items()]
    return "\n".join(lines)


def table(results: dict, counts: list[int], repeat: int) -> str:
    def med(n, who, key):
        return statistics.median(r[who][key] for r in results[n])

    def ratio(n, key):
        return statistics.median(r["ours"][key] / r["pyinfra"][key] for r in results[n])
    one = min(counts)
    lines = [f"Medians of {repeat} interleaved pairs, seconds (ratio = ours / pyinfra, pair by pair):", "",
             "| hosts | ours cold | pyinfra cold | ratio | ours no-op | pyinfra no-op | ratio | "
             f"ours cold / ours at {one} host | SSH logins per host per run (ours / pyinfra) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for n in counts:
        conns = (f"{max(r['ours']['conns_cold'] for r in results[n])} / "
                 f"{max(r['pyinfra']['conns_cold'] for r in results[n])}")
        lines.append(f"| {n} | {med(n, 'ours', 'cold'):.2f} | {med(n, 'pyinfra', 'cold'):.2f} | "
                     f"{ratio(n, 'cold'):.2f} | {med(n, 'ours', 'noop'):.2f} | {med(n, 'pyinfra', 'noop'):.2f} | "
                     f"{ratio(n, 'noop'):.2f} | {med(n, 'ours', 'cold') / med(one, 'ours', 'cold'):.2f} | {conns} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", default="1,16")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pip-hosts", default="", help="also time a code-only change with build = pip vs none")
    ap.add_argument("--wheels", help="a directory of wheels for examples/blog/requirements.txt (--pip-hosts)")
    ap.add_argument("--write", action="store_true", help="write the table into bench/results.md")
    ap.add_argument("--baseline", metavar="REV", help="also time the tool as it was at this git revision")
    ap.add_argument("--fast-kex-too", action="store_true",
                    help="also time ours with ssh_fast_kex = yes (curve25519 first, pyinfra's key exchange)")
    ap.add_argument("--cpu", action="store_true",
                    help="also count the CPU seconds of each run on the deployer's side and on the hosts' side")
    args = ap.parse_args()
    counts = [int(x) for x in args.hosts.split(",")]
    global WHEELS, CPU
    CPU = args.cpu
    if CPU:
        cpu_account.become_subreaper()
    WHEELS = Path(args.wheels or "/nonexistent").resolve()
    if args.pip_hosts and not WHEELS.is_dir():
        raise SystemExit("--pip-hosts needs --wheels DIR (e.g. a build/wheels-*.tar of the tests, unpacked)")
    exe = ensure_pyinfra()
    base = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    tree = export_baseline(args.baseline, base / "baseline") if args.baseline else None
    for t in [REPO] + ([tree / "src"] if tree else []):
        compile_tree(t)
    all_hosts = SshHosts(base / "hosts", names=[f"h{i}" for i in range(max(counts))])
    login, logins = None, None
    if CPU:
        sys.path.insert(0, str(REPO))
        from doit_stages.transport import ssh_options
        login = cpu_account.login_cpu(list(all_hosts), ssh_options(all_hosts.ssh_config))
        if args.fast_kex_too:
            logins = {"OpenSSH's default key exchange": login, "ssh_fast_kex = yes (curve25519)":
                      cpu_account.login_cpu(list(all_hosts), ssh_options(all_hosts.ssh_config, True))}
    repo = AppRepo(base / "app")
    source = repo.path
    results: dict[int, list] = {n: [] for n in counts}
    pip_counts = [int(x) for x in args.pip_hosts.split(",") if x]
    pip_results: dict[int, list] = {n: [] for n in pip_counts}
    try:
        for rep in range(args.repeat):
            for n in counts:
                hosts = list(all_hosts)[:n]
                pair = {}
                who_all = (["ours", "pyinfra"] + (["baseline"] if tree else [])
                           + (["fast"] if args.fast_kex_too else []))
                order = who_all[rep % len(who_all):] + who_all[:rep % len(who_all)]
                archive = None
                if order[0] != "ours":   # pyinfra needs the tarball: make it once, untimed
                    _, archive = run_ours(hosts, all_hosts, source, base / f"prep-{n}-{rep}")
                for who in order:
                    if who == "ours":
                        pair["ours"], archive = run_ours(hosts, all_hosts, source, base / f"ours-{n}-{rep}")
                    elif who == "fast":
                        pair["fast"], _ = run_ours(hosts, all_hosts, source, base / f"fast-{n}-{rep}",
                                                   extra="ssh_fast_kex = yes\n")
                    elif who == "baseline":
                        pair["baseline"], _ = run_ours(hosts, all_hosts, source, base / f"base-{n}-{rep}", tree)
                    else:
                        pair["pyinfra"] = run_pyinfra(hosts, all_hosts, exe, archive, base / f"pyi-{n}-{rep}")
                results[n].append(pair)
                print(f"N={n:<3} #{rep + 1}  ours cold {pair['ours']['cold']:.2f} no-op {pair['ours']['noop']:.2f}"
                      f"  |  pyinfra cold {pair['pyinfra']['cold']:.2f} no-op {pair['pyinfra']['noop']:.2f}"
                      + (f"  |  baseline cold {pair['baseline']['cold']:.2f} no-op {pair['baseline']['noop']:.2f}"
                         if tree else "")
                      + (f"  |  fast kex cold {pair['fast']['cold']:.2f} no-op {pair['fast']['noop']:.2f}"
                         if "fast" in pair else "")
                      + f"  |  logins/host ours {pair['ours']['conns_cold']}+{pair['ours']['conns_noop']}"
                      f" pyinfra {pair['pyinfra']['conns_cold']}+{pair['pyinfra']['conns_noop']}", flush=True)
            for n in pip_counts:
                hosts = list(all_hosts)[:n]
                order = ["pip", "none"] if rep % 2 == 0 else ["none", "pip"]
                got = {b: run_code_change(hosts, all_hosts, repo, b, base / f"code-{b}-{n}-{rep}", n) for b in order}
                pip_results[n].append(got)
                print(f"N={n:<3} #{rep + 1}  code-only change: build=pip {got['pip']:.2f}  "
                      f"build=none {got['none']:.2f}",
                      flush=True)
    finally:
        all_hosts.stop()
    text = table(results, counts, args.repeat)
    if CPU:
        text += "\n\n" + cpu_table(results, counts, login)
    if tree:
        text += "\n\n" + baseline_table(results, counts, args.baseline)
    if args.fast_kex_too:
        text += "\n\n" + kex_table(results, counts, logins)
    if pip_counts:
        text += ("\n\nA code-only change (a new commit, requirements unchanged) deployed after a first deploy, "
                 "SSH masters closed; medians, ratio pair by pair:\n\n| hosts | build = pip | build = none | ratio |\n"
                 "| ---: | ---: | ---: | ---: |\n")
        for n in pip_counts:
            rs = pip_results[n]
            text += (f"| {n} | {statistics.median(r['pip'] for r in rs):.2f} | "
                     f"{statistics.median(r['none'] for r in rs):.2f} | "
                     f"{statistics.median(r['pip'] / r['none'] for r in rs):.2f} |\n")
    load = os.getloadavg()
    text += (f"\n\n- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, load average "
             f"when written {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (the machine was shared)")
    print(text)
    if args.write:
        RESULTS.write_text(with_section(RESULTS.read_text(), text, " ".join(sys.argv[1:])))


def with_section(old: str, text: str, command: str) -> str:
    """results.md with this run's table at the head of the fleet section; what the section held before
    (earlier runs and their notes) is kept below it."""
    head = "## doit-stages vs pyinfra (bench/bench_fleet.py)"
    earlier = ""
    if MARK_BEGIN in old:
        earlier = old[old.index(MARK_BEGIN) + len(MARK_BEGIN): old.index(MARK_END)].strip("\n")
        earlier = earlier[len(head):].strip("\n") if earlier.startswith(head) else earlier
        old = old[: old.index(MARK_BEGIN)] + "\0" + old[old.index(MARK_END) + len(MARK_END):]
    else:
        old = old.rstrip("\n") + "\n\n\0\n"
    sub = "### Earlier runs"
    if sub in earlier:   # the latest run before this one goes first among the earlier ones
        latest, rest = earlier.split(sub, 1)
        earlier = latest.strip("\n") + "\n\n" + rest.strip("\n")
    body = f"{head}\n\n`bench/bench_fleet.py {command}`:\n\n{text}\n"
    if earlier:
        body += f"\n{sub}\n\n{earlier}\n"
    return old.replace("\0", f"{MARK_BEGIN}\n{body}{MARK_END}")


if __name__ == "__main__":
    main()
