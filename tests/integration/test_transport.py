"""The SSH transport against real programs: ssh's argv (a host or user starting with '-' is never an option,
checked by OpenSSH's own parser with ssh -G), the framed protocol of the persistent shell run against a real
local sh (the same program text an SSH host's sh reads), the host lock taken and released there, and the
local transport's stream (its argv options alone: tests/unit/test_transport.py)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from doit_stages.config import parse_host
from doit_stages.remote_shell import (
    INLINE_MAX,
    RemoteShell,
    ShellGone,
    Stream,
    command_text,
    request,
    ssh_argv,
    ssh_options,
)
from doit_stages.transport import SSHTransport


# -- ssh's argv -----------------------------------------------------------------------------------------
def ssh_g(argv: list[str]) -> tuple[dict[str, str], str]:
    """What OpenSSH makes of an argv (ssh -G: the resolved config, nothing connects or runs)."""
    res = subprocess.run([argv[0], "-G", *argv[1:]], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line), res.stderr


def test_ssh_argv_passes_user_with_l_port_with_p_and_ends_options_before_the_host():
    argv = ssh_argv("web1", "deploy", 2222, ["-o", "BatchMode=yes"], ["true"])
    assert argv[:4] == ["ssh", "-o", "BatchMode=yes", "-T"]
    assert argv[argv.index("-l") + 1] == "deploy" and argv[argv.index("-p") + 1] == "2222"
    assert argv[-3:] == ["--", "web1", "true"]
    conf, _ = ssh_g(argv)
    assert (conf["hostname"], conf["user"], conf["port"]) == ("web1", "deploy", "2222")


@pytest.mark.parametrize("host, user", [
    ("-oProxyCommand=touch /tmp/dst-pwned-host", "deploy"),
    ("web1", "-oProxyCommand=touch /tmp/dst-pwned-user"),
    ("-F/etc/passwd", "-p1"),
    ("web1", "-p1"),
])
def test_a_host_or_user_starting_with_a_dash_is_never_an_option(host, user, tmp_path):
    argv = ssh_argv(host, user, 22, ["-F", "/dev/null"], ["true"])
    conf, err = ssh_g(argv)
    if conf == {}:                             # read as the host name or user name, and refused as one
        assert "hostname contains invalid characters" in err or "username contains invalid characters" in err
    else:
        assert "proxycommand" not in conf       # no option smuggled in through the user
        assert conf["user"] == user and conf["port"] == "22" and conf["hostname"] == host
    assert argv.index("--") < argv.index(host) and argv[argv.index(user) - 1] == "-l"


# -- the session protocol, against a real local sh ------------------------------------------------------
@pytest.fixture
def shell():
    sh = RemoteShell(["sh", "-c"])          # sh -c "exec sh": the remote side, run here
    yield sh
    sh.close()


def test_argv_reaches_the_program_intact(shell, tmp_path):
    marker = tmp_path / "pwned"
    nasty = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "a'b\"c", "line\nbreak", "if", "!",
             "{", "*", "", " lead"]
    code, out, err = shell.run(["printf", "%s\\0", *nasty])
    assert (code, err) == (0, b"")
    assert out.split(b"\0")[:-1] == [a.encode() for a in nasty]
    assert not marker.exists()


def test_exit_codes_and_both_streams(shell):
    assert shell.run(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, b"out\n", b"err\n")
    code, _, err = shell.run(["no-such-command-here"])
    assert code == 127 and b"not found" in err
    assert shell.run(["printf", "no newline"]) == (0, b"no newline", b"")


def test_a_command_changes_nothing_of_the_session(shell, tmp_path):
    assert shell.run(["cd", str(tmp_path)])[0] == 0
    assert shell.run(["exit", "5"])[0] == 5
    assert shell.run(["sh", "-c", "x=1; export Y=2; set -e; false"])[0] == 1
    assert shell.run(["sh", "-c", 'echo "[$x][$Y]"; pwd'])[1] == f"[][]\n{os.getcwd()}\n".encode()


def test_scripts_get_their_arguments_and_dollar_dollar_is_their_own(shell):
    assert shell.run(["sh", "-c", 'printf "%s|" "$@"', "sh", "a b", "'", ""])[1] == b"a b|'||"
    pids = {shell.run(["sh", "-c", "echo $$"])[1] for _ in range(3)}
    assert len(pids) == 3                    # a script using $$ runs in its own sh
    assert b"eval" in command_text(["sh", "-c", "echo $1", "sh", "x"])
    assert b"eval" not in command_text(["sh", "-c", "echo $$"])


@pytest.mark.parametrize("size", [0, 1, 4096, INLINE_MAX + 1])
def test_input_bytes_arrive_exactly(shell, size):
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    assert shell.run(["cat"], data) == (0, data, b"")


def test_text_input_travels_inline_and_nul_bytes_through_the_stream(shell):
    assert shell.run(["cat"], b"no nul\n") == (0, b"no nul\n", b"")
    assert shell.run(["od", "-An", "-c"], b"a\0b")[1].split() == [b"a", b"\\0", b"b"]


def test_a_command_that_reads_less_than_its_input_does_not_desynchronise(shell):
    big = b"x" * (INLINE_MAX * 2)
    assert shell.run(["head", "-c", "3"], big) == (0, b"xxx", b"")
    assert shell.run(["true"], big) == (0, b"", b"")
    assert shell.run(["echo", "next"]) == (0, b"next\n", b"")


def test_streamed_input_from_a_file(shell, tmp_path):
    src = tmp_path / "blob"
    src.write_bytes(os.urandom(300_000))
    with open(src, "rb") as f:
        chunks = iter(lambda: f.read(65536), b"")
        code, out, _ = shell.run(["sh", "-c", 'cat > "$1"; wc -c < "$1"', "sh", str(tmp_path / "copy")],
                                 Stream(chunks, src.stat().st_size))
    assert (code, int(out)) == (0, 300_000)
    assert (tmp_path / "copy").read_bytes() == src.read_bytes()


def test_a_command_over_its_time_bound_ends_the_session(shell):
    with pytest.raises(ShellGone):
        shell.run(["sleep", "5"], timeout=0.3)
    with pytest.raises(ShellGone):
        shell.run(["true"])


def test_a_session_whose_shell_died_says_so():
    sh = RemoteShell(["sh", "-c"])
    os.kill(sh.proc.pid, 9)                   # the session's sh itself (as a dropped connection ends ssh)
    sh.proc.wait()
    with pytest.raises(ShellGone):
        sh.run(["true"])
    sh.close()


def test_a_shell_that_never_starts_is_an_error():
    """The session's first command (or a wait for its hello) says why: what ssh printed before it ended."""
    for first in (lambda sh: sh.run(["true"]), lambda sh: sh.greet()):
        sh = RemoteShell(["sh", "-c", "echo nope >&2; exit 255", "ignored"])
        with pytest.raises(ShellGone) as info:
            first(sh)
        assert "nope" in info.value.stderr
        sh.close()


def test_the_first_command_goes_with_the_hello():
    """The hello is not waited for: the first command is sent behind it, and its exchange reads the hello's
    answer (the watchdog's words) too. The far side here starts the session only once it has read both
    lines: a deployer that waited for the hello's answer first would never get one."""
    both = 'IFS= read -r a; IFS= read -r b; { printf "%s\\n%s\\n" "$a" "$b"; exec cat; } | sh -c "$0"'
    sh = RemoteShell(["sh", "-c", both])
    try:
        assert sh.greeting
        assert sh.run(["sh", "-c", "echo out; echo err >&2"], timeout=20) == (0, b"out\n", b"err\n")
        assert not sh.greeting and sh.session is not None
        assert Path(f"/proc/{sh.session.pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sh", b"-c"]
        assert sh.run(["echo", "next"], timeout=20) == (0, b"next\n", b"")
    finally:
        sh.close()


def test_the_token_never_reaches_a_command(shell):
    code, out, _ = shell.run(["sh", "-c", 'env; set; echo "[$__dst_tok]"'])
    assert code == 0 and shell.token not in out and b"[]" in out
    assert shell.token not in Path(f"/proc/{shell.proc.pid}/cmdline").read_bytes()


def test_openssh_chooses_the_key_exchange_unless_ssh_fast_kex(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text("Host *\n    User deploy\n")
    default, _ = ssh_g(ssh_argv("web1", None, None, ["-F", str(cfg)]))     # what plain `ssh -F cfg` does
    assert "kexalgorithms" not in " ".join(ssh_options(cfg)).lower()
    conf, _ = ssh_g(ssh_argv("web1", None, None, ssh_options(cfg)))
    assert conf["kexalgorithms"] == default["kexalgorithms"]      # OpenSSH 9.x: sntrup761x25519-sha512 first

    fast = ssh_options(cfg, fast_kex=True)
    assert fast[fast.index("-F") + 2:fast.index("-F") + 4] == [
        "-o", "KexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org"]
    conf, _ = ssh_g(ssh_argv("web1", None, None, fast))
    assert conf["kexalgorithms"].startswith("curve25519-sha256,curve25519-sha256@libssh.org,")
    assert "sntrup761x25519-sha512@openssh.com" in conf["kexalgorithms"]      # the default list follows


@pytest.mark.parametrize("fast_kex", [False, True])
def test_the_users_kexalgorithms_wins_either_way(tmp_path, fast_kex):
    cfg = tmp_path / "cfg"
    cfg.write_text("Host *\n    KexAlgorithms sntrup761x25519-sha512@openssh.com\n")
    opts = ssh_options(cfg, fast_kex=fast_kex)
    assert "kexalgorithms" not in " ".join(opts[2:]).lower()
    conf, _ = ssh_g(ssh_argv("web1", None, None, opts))
    assert conf["kexalgorithms"] == "sntrup761x25519-sha512@openssh.com"


def test_a_command_whose_wait_was_interrupted_does_not_confuse_the_next(shell):
    """E.g. SIGTERM while a command runs: atexit then releases the locks over the same session."""
    os.write(shell.proc.stdin.fileno(), request(["sh", "-c", "sleep 0.2; echo old; echo olderr >&2; exit 3"],
                                                shell._next()))
    assert shell.run(["sh", "-c", "echo new; echo newerr >&2"]) == (0, b"new\n", b"newerr\n")
    assert shell.run(["echo", "next"]) == (0, b"next\n", b"")


# -- the lock's one-command take and release, on the local transport -------------------------------------
def test_lock_taken_with_its_owner_and_released_only_by_its_own_token(tmp_path):
    from doit_stages.config import Host
    from doit_stages.layout import Layout
    from doit_stages.runtime.lock import read_holder, release_lock, take_lock
    from doit_stages.transport import LocalTransport

    t, layout = LocalTransport(Host("local")), Layout(str(tmp_path / "srv"))
    mine = {"user": "u", "machine": "elsewhere", "pid": 1, "token": "a" * 32}
    assert take_lock(t, layout, mine) is None
    assert read_holder(t, layout) == mine
    assert take_lock(t, layout, {**mine, "token": "b" * 32}) == mine      # refused, with the holder
    release_lock(t, layout, "b" * 32)                                      # not its lock: stays
    assert Path(layout.lock).is_dir()
    release_lock(t, layout, "a" * 32)
    assert not Path(layout.lock).exists()


def test_stream_gives_output_as_it_comes_and_takes_answers():
    """The local transport's stream: a chunk arrives before the command ends; stdin answers it."""
    from doit_stages.config import Host
    from doit_stages.transport import CommandFailed, LocalTransport

    t = LocalTransport(Host("local"))
    s = t.stream(["sh", "-c", 'printf "ready\\n"; read x; echo "got $x"; sleep 0.3; echo end'])
    chunks = s.chunks()
    first_at, first = next(chunks)
    assert first == "ready\n"
    s.write("go\n")
    rest = list(chunks)
    s.finish()
    assert "".join(c for _, c in rest) == "got go\nend\n"
    assert rest[-1][0] - first_at >= 0.3
    bad = t.stream(["sh", "-c", "echo oops >&2; exit 4"])
    assert list(bad.chunks()) == []
    with pytest.raises(CommandFailed) as err:
        bad.finish()
    assert err.value.retcode == 4 and "oops" in err.value.stderr


# -- the host's address ({host} in health_url) ----------------------------------------------------------
def test_a_host_reached_by_its_alias_has_the_hostname_ssh_connects_to_as_its_address(ssh_hosts):
    t = SSHTransport(parse_host("ssh://web1"), ssh_config=ssh_hosts.ssh_config)
    try:
        assert t.run(["sh", "-c", "echo here"]) == "here\n"      # the alias leads to the host
        assert t.address() == "127.0.0.1"                     # its HostName, as ssh -G says (not "web1")
    finally:
        t.close()
