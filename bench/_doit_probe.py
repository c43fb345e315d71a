"""Run doit in this process exactly as `python -m doit ARGS` would, and measure it from the inside.

    BENCH_PROBE_OUT=out.json python bench/_doit_probe.py -f dodo.py deploy:test

Writes JSON to $BENCH_PROBE_OUT when the process ends (after every other atexit handler, so the tool's
lock release is included):
  - rss_self_kb: peak RSS of this (the doit) process; rss_children_kb: the largest of its children
    (the verify pytest subprocess, ssh, git, pip), both from getrusage;
  - startup_s: interpreter start -> first node looked at (imports, dodo.py, stages.ini, doit's graph);
    exit_s: last node done -> process end (dep file, atexit: host locks released);
  - nodes: per doit task, in order: check_s (the up-to-date check), run_s (the action), spans (each check
    and action: [phase, start, end] on time.monotonic(), the clock every process here shares), status, and the
    processes it started by kind (ssh command, ssh session = plumbum's shell, scp, pytest, git, ...) and
    by host port; "rtt": commands sent over a host's session, and "exchanges": the session's exchanges
    (serial round trips: a command, or a streamed input's two), per phase and host port;
  - total_s: what the process measured itself (without the interpreter's own start);
  - with BENCH_PROBE_TRACE=1, "trace": every command sent over a host's session (and each session's start:
    ssh started and the hello written; the login goes on behind it) with its node, start (seconds since
    this module began) and length.

With BENCH_PROBE_PROFILE=file.prof the run is also profiled with cProfile (main thread only: work
fanned out to hosts runs in threads and shows up there as time in Thread.join).

Nothing of the tool is changed: doit's Runner.select_task / execute_task and Popen._execute_child are
wrapped to take times and count processes. Runs with the default (serial) doit runner only.
"""
from __future__ import annotations

import atexit
import json
import os
import resource
import subprocess
import sys
import threading
import time

T0 = time.perf_counter()
# time since the interpreter started (close enough: this module is the first thing it runs)
BOOT_S = time.time() - float(os.environ.get("BENCH_PROBE_LAUNCHED", time.time()))

OUT = os.environ.get("BENCH_PROBE_OUT")
PROFILE = os.environ.get("BENCH_PROBE_PROFILE")
TRACE = bool(os.environ.get("BENCH_PROBE_TRACE"))   # each command over a session: node, start, seconds
_trace: list[dict] = []

_lock = threading.Lock()
_state = {"node": "(startup)", "phase": "startup", "first_node_at": None, "last_node_end": None}
_nodes: dict[str, dict] = {}


def _node(name: str) -> dict:
    if name not in _nodes:
        _nodes[name] = {"check_s": 0.0, "run_s": 0.0, "status": None, "spawns": {}, "hosts": {}}
    return _nodes[name]


def _classify(argv) -> tuple[str, str | None]:
    """(kind, host port or None) of a process about to start."""
    if isinstance(argv, (str, bytes)):
        argv = [argv]
    argv = [os.fsdecode(a) for a in argv]
    prog = os.path.basename(argv[0]) if argv else "?"
    if prog in ("ssh", "scp"):
        port = None
        flag = "-p" if prog == "ssh" else "-P"
        for i, a in enumerate(argv[:-1]):
            if a == flag:
                port = argv[i + 1]
        if prog == "scp":
            return "scp", port
        if "-O" in argv:
            return "ssh control", port
        if "--" in argv:                     # tasks/remote_shell.ssh_argv: options, --, host, remote words
            dest = argv.index("--") + 1
        else:
            dest = next((i for i, a in enumerate(argv) if "@" in a and not a.startswith("-")
                         and argv[i - 1] != "-o"), None)
        if dest is not None and (argv[dest + 1:] in ([], ["/bin/sh"]) or argv[dest + 1:] == [_session_program()]):
            return "ssh session", port       # the run's session (remote_shell.RemoteShell), or plumbum's shell
        return "ssh command", port
    if prog.startswith("python") and "pytest" in argv:
        return "pytest (verify)", None
    if prog.startswith("python") and "pip" in argv:
        return "pip", None
    return prog, None


def _session_program() -> str | None:
    try:
        from doit_stages.remote_shell import REMOTE
        return REMOTE
    except ImportError:
        return None


def _count(argv) -> None:
    kind, port = _classify(argv)
    with _lock:
        n = _node(_state["node"])
        phase = _state["phase"]
        n["spawns"][kind] = n["spawns"].get(kind, 0) + 1
        if port is not None:
            per = n["hosts"].setdefault(str(port), {}).setdefault(phase, {})
            per[kind] = per.get(kind, 0) + 1


def _install() -> None:
    from doit.runner import Runner

    orig_execute_child = subprocess.Popen._execute_child

    def _execute_child(self, args, *rest, **kw):
        try:
            _count(args)
        except Exception:       # never let the probe break the run
            pass
        return orig_execute_child(self, args, *rest, **kw)
    subprocess.Popen._execute_child = _execute_child

    orig_select, orig_execute = Runner.select_task, Runner.execute_task

    def select_task(self, node, tasks_dict):
        name = node.task.name
        if _state["first_node_at"] is None:
            _state["first_node_at"] = time.perf_counter()
        with _lock:
            _state["node"], _state["phase"] = name, "check"
            _node(name)
        t, m = time.perf_counter(), time.monotonic()
        try:
            return orig_select(self, node, tasks_dict)
        finally:
            with _lock:
                n = _node(name)
                n["check_s"] += time.perf_counter() - t
                n.setdefault("spans", []).append(["check", m, time.monotonic()])
                n["status"] = node.run_status
                _state["last_node_end"] = time.perf_counter()

    def execute_task(self, task):
        with _lock:
            _state["node"], _state["phase"] = task.name, "run"
        t, m = time.perf_counter(), time.monotonic()
        try:
            return orig_execute(self, task)
        finally:
            with _lock:
                _node(task.name)["run_s"] += time.perf_counter() - t
                _node(task.name).setdefault("spans", []).append(["run", m, time.monotonic()])
                _state["last_node_end"] = time.perf_counter()
                _state["node"], _state["phase"] = "(between nodes)", "between"

    Runner.select_task, Runner.execute_task = select_task, execute_task
    _count_round_trips()


def _count_round_trips() -> None:
    """Every command sent over a host's session (tasks/remote_shell.RemoteShell.run) is one round trip:
    counted per node, phase and host port under "rtt" (count and seconds)."""
    try:
        from doit_stages.remote_shell import RemoteShell
    except ImportError:
        return
    orig_run = RemoteShell.run

    def run(self, argv, *a, **kw):
        t = time.perf_counter()
        try:
            return orig_run(self, argv, *a, **kw)
        finally:
            dt = time.perf_counter() - t
            if TRACE:
                _trace.append({"node": _state["node"], "phase": _state["phase"], "what": _label(argv),
                               "start_s": t - T0, "seconds": dt})
            try:
                args = list(self.proc.args)
                port = args[args.index("-p") + 1] if "-p" in args else "?"
                with _lock:
                    n = _node(_state["node"])
                    per = n.setdefault("rtt", {}).setdefault(_state["phase"], {}).setdefault(str(port), [0, 0.0])
                    per[0] += 1
                    per[1] += dt
            except Exception:
                pass
    RemoteShell.run = run

    orig_run_many = getattr(RemoteShell, "run_many", None)

    def run_many(self, commands, *a, **kw):
        """A batch (several commands in one exchange): one round trip, traced as its commands joined by +."""
        t = time.perf_counter()
        try:
            return orig_run_many(self, commands, *a, **kw)
        finally:
            dt = time.perf_counter() - t
            if TRACE:
                _trace.append({"node": _state["node"], "phase": _state["phase"],
                               "what": " + ".join(_label(c.argv, 28) for c in commands), "start_s": t - T0,
                               "seconds": dt})
            try:
                args = list(self.proc.args)
                port = args[args.index("-p") + 1] if "-p" in args else "?"
                with _lock:
                    n = _node(_state["node"])
                    per = n.setdefault("rtt", {}).setdefault(_state["phase"], {}).setdefault(str(port), [0, 0.0])
                    per[0] += 1
                    per[1] += dt
            except Exception:
                pass
    if orig_run_many is not None:
        RemoteShell.run_many = run_many

    orig_init = RemoteShell.__init__

    def __init__(self, *a, **kw):
        t = time.perf_counter()
        try:
            return orig_init(self, *a, **kw)
        finally:
            if TRACE:
                _trace.append({"node": _state["node"], "phase": _state["phase"], "what": "(ssh started, hello sent)",
                               "start_s": t - T0, "seconds": time.perf_counter() - t})
    RemoteShell.__init__ = __init__

    orig_exchange = RemoteShell._exchange

    def _exchange(self, *a, **kw):
        """One exchange = one serial network round trip over the session (a command, or a stream's "go" and
        then its bytes): counted per node, phase and host port under "exchanges" as [commands, logins]
        (logins: an exchange that waited for the session's hello alone, RemoteShell.greet; the first command
        goes behind the hello and reads its answer too, counted as a command)."""
        try:
            return orig_exchange(self, *a, **kw)
        finally:
            try:
                args = list(self.proc.args)
                port = args[args.index("-p") + 1] if "-p" in args else "?"
                with _lock:
                    n = _node(_state["node"])
                    per = n.setdefault("exchanges", {}).setdefault(_state["phase"], {}).setdefault(str(port), [0, 0])
                    per[0 if self.seq else 1] += 1
            except Exception:
                pass
    RemoteShell._exchange = _exchange


def _label(argv, width: int = 60) -> str:
    """A command's short name for the trace: the program, or the first words of an `sh -c` script."""
    argv = [str(a) for a in argv]
    if argv and argv[0] == "env":        # `env K=V ... prog`: named by prog (the settings are names and paths)
        argv = argv[1:]
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            argv = argv[1:]
        argv = argv or ["env"]
    if os.path.basename(argv[0]) == "psql" and "-c" in argv[:-1]:
        return f"psql -c {' '.join(argv[argv.index('-c') + 1].split())[:40]!r}"
    if len(argv) >= 3 and argv[1] == "-c" and os.path.basename(argv[0]) in ("sh", "bash", "python3"):
        return f"{argv[0]} -c {' '.join(argv[2].split())[:width]!r}"
    return " ".join([argv[0], *(a for a in argv[1:4] if a.startswith("-"))])   # no paths: runs group together


def _report() -> None:
    end = time.perf_counter()
    if _profiler is not None:
        _profiler.disable()
        _profiler.dump_stats(PROFILE)
    if not OUT:
        return
    first = _state["first_node_at"] or end
    done = _state["last_node_end"] or end
    data = {
        "argv": sys.argv[1:],
        "rss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "boot_s": BOOT_S,
        "startup_s": first - T0,
        "exit_s": end - done,
        "total_s": end - T0,
        "nodes": _nodes,
    }
    if TRACE:
        data["trace"] = _trace
        data["first_node_s"] = first - T0
        data["last_node_end_s"] = done - T0
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1)


# -- what-if patches (BENCH_PROBE_WHATIF=nosleep): how fast the tool would be with a change, measured
# without changing it. Not the tool's behaviour; only bench_deploy.py --what-if sets them.

def _whatif_nosleep() -> None:
    """plumbum's ShellSession.close() without its time.sleep(0.05): what a transport without a plumbum
    shell session (plain ssh/scp processes) would cost per connect()."""
    import contextlib

    from plumbum.machines.session import ShellSession

    def close(self):
        if not self.alive():
            return
        with contextlib.suppress(ValueError, OSError):
            self.proc.stdin.write(b"\nexit\n")
            self.proc.stdin.flush()
        for p in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                p.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc = None
    ShellSession.close = close


_profiler = None
atexit.register(_report)          # registered first, so it runs last (after the tool's lock release)

if __name__ == "__main__":
    _install()
    for name in filter(None, os.environ.get("BENCH_PROBE_WHATIF", "").split(",")):
        {"nosleep": _whatif_nosleep}[name]()
    if PROFILE:
        import cProfile
        _profiler = cProfile.Profile()
        _profiler.enable()
    from doit.doit_cmd import DoitMain
    code = DoitMain().run(sys.argv[1:])
    with _lock:
        _state["node"], _state["phase"] = "(exit)", "exit"
    sys.exit(code)
