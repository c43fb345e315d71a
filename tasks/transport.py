"""One small interface: run an argv, put a file, get a file, test a path. Local and SSH.

Commands are argv lists. Over SSH the argv is quoted once with shlex.join, so the remote shell gives the
program exactly these arguments and never runs a second command. Values that a shell script needs travel
as positional arguments ("$1"), never formatted into the script.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import localcmd
from .config import Host, rules
from .remote_shell import (  # noqa: F401 (re-exported)
    INLINE_MAX,
    SKIPPED,
    Cmd,
    RemoteShell,
    ShellGone,
    Stream,
    control_path,
    ssh_argv,
    ssh_options,
)
from .watchdog import Watched, parse_ident, watched

CONNECT_TIMEOUT = 60.0   # seconds for ssh to connect, log in and start the remote shell


class CommandFailed(Exception):
    """A command on a host exited non-zero (or the host could not be reached)."""

    def __init__(self, host: Host, argv: Sequence[str], retcode: int, stderr: str):
        self.host, self.argv, self.retcode, self.stderr = host, list(argv), retcode, stderr
        last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), "")
        what = "cannot reach the host" if self.unreachable else f"{argv[0]} exited {retcode}"
        super().__init__(f"{host}: {what}" + (f": {last.strip()}" if last else ""))

    @property
    def unreachable(self) -> bool:
        return self.retcode == 255 and not self.host.local


def call_key(argv: Sequence[str], input: bytes | None = None) -> tuple:
    """The key a read's kept answer is found by (Transport.keep): its very argv and input."""
    return ("call", tuple(argv), input)


class Transport:
    """Kept answers: while the run holds the host's lock (`held`, set by the Session), no other run changes
    what it deploys there, so what a read answered stays true until THIS run sends its next command to the
    host. A step may keep such an answer (keep) and a later read of the same thing take it (kept, call_kept)
    instead of asking again: an up-to-date check's answer for its own action, the reads of several checks
    sent in one exchange. Every command sent to the host (any call, batch, stream, put or get: each may
    change something) forgets every kept answer first; a hook run by the run forgets them too
    (Session.forget_reads)."""
    host: Host
    session: Watched | None = None   # the process on the host that runs this transport's commands (SSH)
    on_session: Callable[[Watched], None] | None = None   # told of each second channel (stream) started
    held: bool = False   # the run holds the host's lock (Session._take / _own): answers may be kept

    def session_word(self) -> str:
        """This transport's session as a lock's take records it (its `sessions` line; "" when none)."""
        return self.session.line() if self.session else ""

    def wait_login(self) -> None:
        """Wait until the host's shell answered (nothing to wait for but over SSH)."""

    def keep(self, key, answer) -> None:
        """Keep an answer read just now, while the run holds the host's lock (else nothing is kept)."""
        if self.held:
            self.__dict__.setdefault("_kept", {})[key] = answer

    def kept(self, key):
        """The answer kept under key since this run's last command to the host, else None."""
        return self.__dict__.get("_kept", {}).get(key)

    def forget(self) -> None:
        """Every kept answer dropped: a command is about to run (or the lock is let go, or a hook ran)."""
        self.__dict__.pop("_kept", None)

    def call_kept(self, argv: Sequence[str], input: bytes | None = None) -> tuple[int, str, str]:
        """call, answered by a kept answer of the same argv and input when there is one; else asked, and
        the answer kept for a later identical read (the next command forgets it)."""
        key = call_key(argv, input)
        answer = self.kept(key)
        if answer is None:
            answer = self.call(argv, input)
            self.keep(key, answer)
        return answer

    def batch(self, commands: Sequence[Cmd], on_line=None) -> list[tuple[int, str, str]]:
        """The commands in order, over SSH in ONE exchange (remote_shell.RemoteShell.run_many): each one's
        (exit code, stdout, stderr); one marked if_ok runs only when the one before it exited 0 (else
        SKIPPED). on_line(stream, line), if given, sees the complete lines of their output as they come (a
        reload's, the last). Here, one call after another (the last streamed when on_line is given)."""
        answers: list[tuple[int, str, str]] = []
        for i, c in enumerate(commands):
            if c.if_ok and answers and answers[-1][0] != 0:
                answers.append((SKIPPED, "", ""))
            elif on_line is not None and i == len(commands) - 1 and c.input is None:
                answers.append(self.stream_lines(c.argv, on_line))
            else:
                answers.append(self.call(c.argv, c.input))
        return answers

    def read_batch(self, reads: Sequence[tuple[object, Cmd]], writes: Sequence[Cmd] = (),
                   on_line=None) -> list[tuple[int, str, str]]:
        """writes, then reads, in one exchange; each read's answer kept under its key (the reads come last:
        nothing this run sends changes the host after them). Returns the writes' answers. on_line: batch's."""
        answers = self.batch([*writes, *(c for _, c in reads)], on_line)
        for (key, _), answer in zip(reads, answers[len(writes):]):
            if answer[0] != SKIPPED:
                self.keep(key, answer)
        return answers[:len(writes)]

    def address(self) -> str:
        """The host's name as this machine reaches it other than by ssh ({host} in health_url)."""
        return self.host.address

    def run(self, argv: Sequence[str], input: bytes | None = None, check: bool = True) -> str:
        """Run argv; return its stdout as text. Raises CommandFailed when it exits non-zero (check)."""
        code, out, err = self.call(argv, input)
        if check and code != 0:
            raise CommandFailed(self.host, argv, code, err)
        return out

    def call(self, argv: Sequence[str], input: bytes | None = None,
             timeout: float | None = None) -> tuple[int, str, str]:
        """(exit code, stdout, stderr); timeout (seconds) bounds the wait where a command must be quick."""
        raise NotImplementedError

    def stream_lines(self, argv: Sequence[str], on_line) -> tuple[int, str, str]:
        """Like call, for a long command whose output is read as it comes: on_line(stream, line) sees each
        complete line of "out" and "err" as it arrives."""
        raise NotImplementedError

    def put(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def send(self, argv: Sequence[str], local: Path, reads_all: bool = False) -> tuple[int, str, str]:
        """Like call, with a local file's bytes on argv's stdin (streamed, not held in memory). reads_all:
        argv reads its stdin to the end whatever happens (remote_shell.Stream)."""
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        return self.call(["test", "-e", path])[0] == 0

    def popen(self, argv: Sequence[str]) -> subprocess.Popen:
        """argv started with stdin, stdout and stderr as pipes (for stream)."""
        raise NotImplementedError

    def stream(self, argv: Sequence[str]) -> "Running":
        """argv started; its stdout read as it comes (Running.chunks), its stdin open for answers."""
        return Running(self.host, argv, self.popen(argv))

    @contextlib.contextmanager
    def tunnel(self, dhost: str, dport: int) -> Iterator[tuple[str, int]]:
        """(host, port) on this machine that reaches dhost:dport as the host sees it."""
        self.forget()
        yield dhost, dport

    def close(self) -> None:
        pass

    def let_go(self) -> None:
        """The run's end: the connection closed without waiting for it to end (RemoteShell.let_go)."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _communicate(proc: subprocess.Popen, input: bytes | None, timeout=None) -> tuple[int, str, str]:
    out, err = proc.communicate(input, timeout)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class Running:
    """A running command whose stdout is read chunk by chunk, each chunk stamped with this machine's
    monotonic clock on arrival (so events are timed without trusting the host's clock)."""

    def __init__(self, host: Host, argv: Sequence[str], proc: subprocess.Popen, err: bytes = b""):
        self.host, self.argv, self.proc = host, list(argv), proc
        self._err: list[bytes] = [err]
        self._drain = threading.Thread(target=lambda: self._err.append(proc.stderr.read()), daemon=True)
        self._drain.start()

    def write(self, text: str) -> None:
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except OSError:  # it ended already: finish() says why
            pass

    def chunks(self) -> Iterator[tuple[float, str]]:
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            yield time.monotonic(), data.decode(errors="replace")

    def finish(self) -> None:
        """Wait for the end; CommandFailed when it exited non-zero."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        code = self.proc.wait()
        self._drain.join()
        if code != 0:
            raise CommandFailed(self.host, self.argv, code, b"".join(self._err).decode(errors="replace"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.finish()


class LocalTransport(Transport):
    def __init__(self, host: Host):
        self.host = host

    def call(self, argv, input=None, timeout=None):
        self.forget()
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: command not found"
        try:
            return _communicate(proc, input, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return 124, "", f"{argv[0]}: no answer within {timeout}s"

    def popen(self, argv):
        self.forget()
        try:
            return subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise CommandFailed(self.host, argv, 127, f"{argv[0]}: command not found") from None

    def stream_lines(self, argv, on_line):
        self.forget()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        got = {"out": [], "err": []}

        def pump(which, pipe):
            for raw in pipe:
                got[which].append(raw)
                on_line(which, raw.decode(errors="replace").rstrip("\n"))
        threads = [threading.Thread(target=pump, args=(w, p), daemon=True)
                   for w, p in (("out", proc.stdout), ("err", proc.stderr))]
        for th in threads:
            th.start()
        code = proc.wait()
        for th in threads:
            th.join()
        return code, b"".join(got["out"]).decode(errors="replace"), b"".join(got["err"]).decode(errors="replace")

    def put(self, local, remote):
        self.run(["cp", str(local), remote])

    def send(self, argv, local, reads_all=False):
        self.forget()
        with open(local, "rb") as f:
            proc = subprocess.Popen(list(argv), stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return _communicate(proc, None)

    def get(self, remote, local):
        self.run(["cp", remote, str(local)])


def destination_problem(host: Host) -> str | None:
    """ssh_argv puts the user after -l, the port after -p and the host after `--`; config.parse_host also
    refuses names ssh could read as options. This re-checks any Host before an ssh process is started."""
    return rules.hostname_problem(host.hostname) or (rules.user_problem(host.user) if host.user else None)


def hostname_of(ssh_g: str) -> str | None:
    """`ssh -G <alias>` output (one "key value" a line, keys in lower case) -> the value of its hostname
    line (the alias's HostName, or the alias itself when the config gives none); None without one."""
    for line in ssh_g.splitlines():
        key, _, value = line.strip().partition(" ")
        if key.lower() == "hostname" and value.strip():
            return value.strip()
    return None


class SSHTransport(Transport):
    """Every command, put and get over ONE `ssh host sh` session for the whole run (remote_shell.py)."""

    def __init__(self, host: Host, ssh_config: Path | None = None, fast_kex: bool = False):
        self.host = host
        problem = destination_problem(host)
        if problem:
            raise CommandFailed(host, ["ssh"], 2, f"refused: {problem}")
        self._mutex = threading.Lock()
        self.opts = ssh_options(ssh_config, fast_kex)
        self._cancels: list[localcmd.PlumbumLocalPopen] = []   # `ssh -O cancel`s, waited for at close
        self._address: str | None = None
        argv = ssh_argv(host.hostname, host.user, host.port, self.opts)
        try:   # no wait for the login: it goes on behind the hello (a failed one is the first command's)
            self.shell = RemoteShell(argv, timeout=CONNECT_TIMEOUT)
        except OSError as exc:  # no ssh client here
            raise CommandFailed(host, ["ssh"], 255, str(exc)) from None

    @property
    def session(self) -> Watched | None:   # type: ignore[override]
        """The session's watchdog (waited for when no command read the hello's answer yet; None when the
        login failed: its first command says why)."""
        try:
            self.wait_login()
        except CommandFailed:
            return None
        return self.shell.watched

    def session_word(self) -> str:
        """Before the hello's answer came: "-", the session shell's own (lock_take.sh), not waited for."""
        return "-" if self.shell.greeting else super().session_word()

    def wait_login(self) -> None:
        """Wait until the host's shell answered (the login done), e.g. to bound logins under way at once.
        Once it answered, nothing to wait for, and the session is not locked: a second channel is opened
        while the session waits on a command (a second Ctrl-C ends a reload through one). An ssh that ended
        before the answer is the login's failure (CommandFailed, with what ssh said), however early it ended."""
        if not self.shell.never_answered:
            return
        with self._mutex:
            try:
                self.shell.greet()
            except ShellGone as exc:
                self._lost(exc)

    def address(self) -> str:
        """The HostName ssh connects to for this host (its config may make the alias another name): `ssh -G`
        reads the config and connects nowhere; asked once, on first use. The name as written when ssh
        names none."""
        if self._address is None:
            argv = ssh_argv(self.host.hostname, self.host.user, self.host.port, ["-G", *self.opts])
            res = localcmd.call(argv, timeout=10)
            out = res.out.decode(errors="replace") if res.code == 0 else ""
            self._address = hostname_of(out) or self.host.hostname
        return self._address

    def call(self, argv, input=None, timeout=None):
        code, out, err = self._run(argv, input, timeout=timeout)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def _run(self, argv, input=None, timeout=None) -> tuple[int, bytes, bytes]:
        self.forget()
        with self._mutex:
            try:
                return self.shell.run(argv, input, timeout)
            except ShellGone as exc:
                return self._lost(exc)

    def popen(self, argv):
        """A second channel of the run's one connection (through its master socket: no new login), for a
        command that talks both ways while it runs (the rehearsal's runner). It runs under the watchdog
        (watchdog.py): closing its stdin before it ended, or dying, ends it on the host."""
        self.forget()
        self.wait_login()   # the master connection up first (a session's login goes on behind its hello)
        remote = ssh_argv(self.host.hostname, self.host.user, self.host.port, self.opts,
                          [shlex.join(watched(argv))])
        return subprocess.Popen(remote, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stream(self, argv):
        """popen's channel, once its watchdog said which process it is (on_session is told: a lock records it)."""
        proc = self.popen(argv)
        first = proc.stderr.readline()
        ident = parse_ident(first.decode(errors="replace"))
        if ident is not None and self.on_session is not None:
            self.on_session(ident)
        return Running(self.host, argv, proc, b"" if ident else first)

    @contextlib.contextmanager
    def tunnel(self, dhost, dport):
        """A local port forwarded to dhost:dport as the host sees it, by the run's master connection (`ssh
        -O forward`, a command of this machine: localcmd); only ports and addresses are on the command line.
        Cancelled after use."""
        self.forget()
        self.wait_login()   # `ssh -O forward` needs the master connection up
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            lport = s.getsockname()[1]
        spec = f"127.0.0.1:{lport}:[{dhost}]:{dport}" if ":" in dhost else f"127.0.0.1:{lport}:{dhost}:{dport}"
        where = ssh_argv(self.host.hostname, self.host.user, self.host.port, [*self.opts, "-O", "forward", "-L", spec])
        res = localcmd.call(where, timeout=60)
        if res.code != 0:
            raise CommandFailed(self.host, ["ssh", "-L", f"{dhost}:{dport}"], res.code, res.stderr)
        try:
            yield "127.0.0.1", lport
        finally:
            cancel = ssh_argv(self.host.hostname, self.host.user, self.host.port,
                              [*self.opts, "-O", "cancel", "-L", spec])
            proc = localcmd.start(cancel)
            if proc is not None:
                self._cancels.append(proc)

    def batch(self, commands, on_line=None):
        self.forget()
        with self._mutex:
            try:
                answers = self.shell.run_many(commands, on_line=on_line)
            except ShellGone as exc:
                answers = [self._lost(exc)] * len(commands)
        return [(code, out.decode(errors="replace"), err.decode(errors="replace")) for code, out, err in answers]

    def stream_lines(self, argv, on_line):
        self.forget()
        with self._mutex:
            try:
                code, out, err = self.shell.run(argv, None, None, on_line=on_line)
            except ShellGone as exc:
                code, out, err = self._lost(exc)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def _lost(self, exc: ShellGone) -> tuple[int, bytes, bytes]:
        """A command's answer when the connection is gone: exit 255. When its shell never answered (the login
        failed: the first command went behind the hello), the host could not be reached at all, raised as
        a connection made then raised it, whatever the command was."""
        if self.shell.never_answered:
            raise CommandFailed(self.host, ["ssh"], 255, " ".join(exc.stderr.split())[-300:])
        return 255, b"", exc.stderr.encode()

    def put(self, local, remote):
        """The file's bytes through the session's stdin, streamed (no scp: no second connection)."""
        code, _, err = self.send(["sh", "-c", 'cat > "$1"', "sh", remote], local)
        if code != 0:
            raise CommandFailed(self.host, ["put", str(local), remote], code, err)

    def send(self, argv, local, reads_all=False):
        with open(local, "rb") as f:
            data = Stream(iter(lambda: f.read(1 << 20), b""), os.fstat(f.fileno()).st_size, reads_all)
            code, out, err = self._run(argv, data)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def get(self, remote, local):
        code, out, err = self._run(["cat", "--", remote])
        if code != 0:
            raise CommandFailed(self.host, ["get", remote, str(local)], code, err.decode(errors="replace"))
        Path(local).write_bytes(out)

    def close(self):
        self._wait_cancels()
        self.shell.close()

    def let_go(self):
        self._wait_cancels()
        self.shell.let_go()

    def _wait_cancels(self):
        for proc in self._cancels:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def connect(host: Host, ssh_config: Path | None = None, fast_kex: bool = False) -> Transport:
    """fast_kex: [project] ssh_fast_kex (remote_shell.ssh_options)."""
    return LocalTransport(host) if host.local else SSHTransport(host, ssh_config, fast_kex)
