"""watchdog.py against real processes on this machine (the same sh programs a host runs): a session or a
second channel whose deployer dies ends what it runs, except what is marked to finish alone; END, run by
whoever breaks a lock, waits for that and ends the rest; a reused pid is never taken for a recorded one."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doit_stages import watchdog
from doit_stages.remote_shell import RemoteShell

REPO = Path(__file__).resolve().parents[2]
# a deployer: opens a session (locally: `sh -c SESSION`), says which process it is, runs argv and waits
DEPLOYER = """import json, sys
from doit_stages.remote_shell import RemoteShell
sh = RemoteShell(["sh", "-c"])
print(sh.session.line(), flush=True)
sh.run(json.loads(sys.argv[1]))
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(cond, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def pids_in(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def start_deployer(argv: list[str]) -> tuple[subprocess.Popen, watchdog.Watched]:
    import json
    proc = subprocess.Popen([sys.executable, "-c", DEPLOYER, json.dumps(argv)], stdout=subprocess.PIPE, text=True)
    session = watchdog.parse_ident("dst-watch " + proc.stdout.readline())
    assert session is not None
    return proc, session


def test_a_session_says_which_process_it_is():
    sh = RemoteShell(["sh", "-c"])
    try:
        s = sh.session
        fields = Path(f"/proc/{s.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        assert s.pid == sh.proc.pid and s.start == int(fields[19])
        assert s.boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        assert sh.run(["echo", "ok"]) == (0, b"ok\n", b"")
    finally:
        sh.close()
    assert wait_for(lambda: not alive(s.pid))


def test_a_dead_deployer_s_command_ends_with_everything_it_started(tmp_path):
    pids, late = tmp_path / "pids", tmp_path / "late"
    script = 'sleep 300 & echo $! > "$1"; sh -c "sleep 301 & wait" & echo $! >> "$1"; sleep 3; touch "$2"'
    proc, session = start_deployer(["sh", "-c", script, "sh", str(pids), str(late)])
    assert wait_for(lambda: len(pids_in(pids)) == 2)
    started = pids_in(pids)
    assert all(alive(p) for p in started)
    proc.kill()
    proc.wait()
    assert wait_for(lambda: not any(alive(p) for p in started) and not alive(session.pid))
    time.sleep(3.5)
    assert not late.exists()


def test_what_is_marked_to_finish_alone_finishes_alone(tmp_path):
    done = tmp_path / "done"
    proc, session = start_deployer(watchdog.let_finish(["sh", "-c", 'sleep 2; echo migrated > "$1"', "sh", str(done)]))
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    time.sleep(0.5)
    assert alive(session.pid) and not done.exists()
    assert wait_for(lambda: done.exists())
    assert done.read_text() == "migrated\n"
    assert wait_for(lambda: not alive(session.pid))     # then the session ends by itself


def test_a_second_channel_ends_when_its_stdin_ends_early(tmp_path):
    late = tmp_path / "late"
    argv = watchdog.watched(["sh", "-c", 'read go; sleep 2; touch "$1"', "sh", str(late)])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    session = watchdog.parse_ident(proc.stderr.readline().decode())
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    time.sleep(0.3)
    proc.stdin.close()
    assert proc.wait(timeout=15) != 0
    assert wait_for(lambda: not alive(session.pid))
    time.sleep(2.5)
    assert not late.exists()


@pytest.fixture
def live_session():
    """A session whose deployer (this test) stays alive: only END can end what it runs."""
    sh = RemoteShell(["sh", "-c"])
    sh.greet()   # its hello answered: which process it is (start_in bypasses the exchanges that read it)
    yield sh
    sh.kill()


def run_end(tmp_path, sessions: list[str], bound: int) -> subprocess.CompletedProcess:
    f = tmp_path / "sessions"
    f.write_text("".join(line + "\n" for line in sessions))
    return subprocess.run(watchdog.end_argv(str(f), bound), capture_output=True, text=True, timeout=120)


def start_in(sh: RemoteShell, argv: list[str]):
    """argv sent to the session without waiting for its end (the session's sh runs it)."""
    from doit_stages.remote_shell import request
    sh.seq += 1
    os.write(sh.proc.stdin.fileno(), request(argv, sh.seq, inline=None))


def test_end_ends_a_recorded_session_and_says_what_it_ended(tmp_path, live_session):
    pids = tmp_path / "pids"
    start_in(live_session, ["sh", "-c", 'sleep 302 & echo $! > "$1"; exec sleep 303', "sh", str(pids)])
    assert wait_for(lambda: pids_in(pids))
    res = run_end(tmp_path, [live_session.session.line()], 30)
    assert res.returncode == 0, res.stderr
    ended = watchdog.parse_end(res.stdout).ended
    assert [c.split() for _, c in ended] == [["sleep", "303"]]
    assert not alive(pids_in(pids)[0]) and not alive(ended[0][0]) and not alive(live_session.session.pid)


def test_end_waits_for_what_finishes_alone_then_ends_the_rest(tmp_path, live_session):
    done = tmp_path / "done"
    start_in(live_session, watchdog.let_finish(["sh", "-c", 'sleep 2; touch "$1"', "sh", str(done)]))
    time.sleep(0.3)
    res = run_end(tmp_path, [live_session.session.line()], 30)
    assert res.returncode == 0, res.stderr
    out = watchdog.parse_end(res.stdout)
    assert done.exists() and len(out.waited) == 1 and out.ended == [] and out.running == []
    assert "waited" in out.text() and "sleep 2" in out.text()
    assert wait_for(lambda: not alive(live_session.session.pid))


def test_end_ends_nothing_while_what_finishes_alone_outlasts_the_bound(tmp_path, live_session):
    start_in(live_session, watchdog.let_finish(["sleep", "304"]))
    time.sleep(0.3)
    res = run_end(tmp_path, [live_session.session.line()], 1)
    out = watchdog.parse_end(res.stdout)
    try:
        assert res.returncode == 3
        assert [c.split() for _, c, _ in out.running] == [["sleep", "304"]] and out.ended == []
        assert alive(out.running[0][0]) and alive(live_session.session.pid)
        assert "still runs sleep 304" in out.text()
    finally:
        for pid, _, _ in out.running:
            os.kill(pid, 9)


def test_end_never_takes_a_reused_pid_or_another_boot_for_a_recorded_session(tmp_path):
    other = subprocess.Popen(["sleep", "305"])
    try:
        fields = Path(f"/proc/{other.pid}/stat").read_text().rsplit(") ", 1)[1].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        res = run_end(tmp_path, [f"{other.pid} {int(fields[19]) + 1} {boot}",
                                 f"{other.pid} {fields[19]} 00000000-0000-0000-0000-000000000000"], 5)
        assert (res.returncode, res.stdout) == (0, "")
        assert alive(other.pid)
    finally:
        other.kill()
        other.wait()


def test_end_with_no_sessions_file_is_quick_and_silent(tmp_path):
    res = subprocess.run(watchdog.end_argv(str(tmp_path / "none"), 5), capture_output=True, text=True)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")



def test_a_last_signal_that_finds_its_process_gone_is_no_failure():
    """END signals what it found alive; the kernel may reap the last of them before its kill: END's status
    must not be that kill's (it was: `doit unlock --force` said "cannot end what the run ... still runs: ?").
    The process gone is a pid above pid_max (no process can have it), `same` saying it is still the one seen."""
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    script = watchdog.LIB + f'\nsame() {{ return 0; }}; all="{gone}:1"; signal_all KILL; echo "status $?"'
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert (res.stdout, res.stderr) == ("status 0\n", "")

def test_the_session_program_is_one_line_any_login_shell_can_pass_on():
    assert "\n" not in watchdog.SESSION and "\n" not in watchdog.watched(["x"])[2]
    res = subprocess.run(["sh", "-c", watchdog.SESSION], input="echo $((6 * 7))\n", capture_output=True, text=True)
    assert res.stdout == "42\n" and res.stderr.startswith("dst-watch ")


def test_a_second_channel_whose_command_ended_ends_with_its_stdin_still_open():
    argv = watchdog.watched(["sh", "-c", "echo out; exit 7"])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.read() == b"out\n"        # EOF: nothing holds the channel's stdout any more
        assert proc.wait(timeout=15) == 7
    finally:
        proc.stdin.close()
        proc.kill()
