"""One small interface over plumbum: run an argv, put a file, get a file, test a path. Local and SSH.

Commands are argv lists. Over SSH the argv is quoted once with shlex.join, so the remote shell gives the
program exactly these arguments and never runs a second command. Values that a shell script needs travel
as positional arguments ("$1"), never formatted into the script.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from plumbum import SshMachine

from .config import Host


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


def control_path() -> str:
    sockdir = Path(f"/tmp/doit-stages-{os.getuid()}")
    sockdir.mkdir(mode=0o700, exist_ok=True)
    return f"{sockdir}/%C"


def ssh_options(ssh_config: Path | None) -> list[str]:
    """Host keys are checked, never accepted blindly; one master connection per host is reused."""
    opts = ["-F", str(ssh_config)] if ssh_config else []
    return opts + ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
                   "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path()}", "-o", "ControlPersist=60",
                   "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]


def ssh_config_for_others(ssh_config: Path | None) -> str:
    """An OpenSSH config that other ssh clients of a run (testinfra in verify) use to ride on the tool's
    master connections, with the same strict host-key checking, and the user's own config after it."""
    user = ssh_config or Path.home() / ".ssh" / "config"
    lines = ["BatchMode yes", "StrictHostKeyChecking yes", "ControlMaster auto",
             f"ControlPath {control_path()}", "ControlPersist 60"]
    if user.is_file():
        lines.append(f"Include {user}")
    return "\n".join(lines) + "\n"


class Transport:
    host: Host

    def run(self, argv: Sequence[str], input: bytes | None = None, check: bool = True) -> str:
        """Run argv; return its stdout as text. Raises CommandFailed when it exits non-zero (check)."""
        code, out, err = self.call(argv, input)
        if check and code != 0:
            raise CommandFailed(self.host, argv, code, err)
        return out

    def call(self, argv: Sequence[str], input: bytes | None = None) -> tuple[int, str, str]:
        raise NotImplementedError

    def put(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        return self.call(["test", "-e", path])[0] == 0

    def popen(self, argv: Sequence[str]) -> subprocess.Popen:
        """argv started with stdin, stdout and stderr as pipes (for stream)."""
        raise NotImplementedError

    def stream(self, argv: Sequence[str]) -> "Stream":
        """argv started; its stdout read as it comes (Stream.chunks), its stdin open for answers."""
        return Stream(self.host, argv, self.popen(argv))

    @contextlib.contextmanager
    def tunnel(self, dhost: str, dport: int) -> Iterator[tuple[str, int]]:
        """(host, port) on this machine that reaches dhost:dport as the host sees it."""
        yield dhost, dport

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _communicate(proc: subprocess.Popen, input: bytes | None) -> tuple[int, str, str]:
    out, err = proc.communicate(input)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class Stream:
    """A running command whose stdout is read chunk by chunk, each chunk stamped with this machine's
    monotonic clock on arrival (so events are timed without trusting the host's clock)."""

    def __init__(self, host: Host, argv: Sequence[str], proc: subprocess.Popen):
        self.host, self.argv, self.proc = host, list(argv), proc
        self._err: list[bytes] = []
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

    def popen(self, argv):
        try:
            return subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise CommandFailed(self.host, argv, 127, f"{argv[0]}: command not found") from None

    def call(self, argv, input=None):
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: command not found"
        return _communicate(proc, input)

    def put(self, local, remote):
        self.run(["cp", str(local), remote])

    def get(self, remote, local):
        self.run(["cp", remote, str(local)])


class SSHTransport(Transport):
    def __init__(self, host: Host, ssh_config: Path | None = None):
        self.host = host
        self.opts = opts = ssh_options(ssh_config)
        self._cancels: list[subprocess.Popen] = []   # forwardings being cancelled, waited for at close
        try:
            self.machine = SshMachine(host.hostname, user=host.user, port=host.port, ssh_opts=opts,
                                      scp_opts=opts)
        except Exception as exc:  # plumbum raises several kinds; all mean the same to the user
            detail = " ".join(str(getattr(exc, "stderr", "") or exc).split())[-300:]
            raise CommandFailed(host, ["ssh"], 255, detail) from None

    def call(self, argv, input=None):
        proc = self.machine.popen([shlex.join(argv)],
                                  stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return _communicate(proc, input)

    def popen(self, argv):
        return self.machine.popen([shlex.join(argv)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)

    @contextlib.contextmanager
    def tunnel(self, dhost, dport):
        """ssh -L through the run's master connection; only the ports are on its command line."""
        try:
            tun = self.machine.tunnel(0, dport, lhost="127.0.0.1", dhost=dhost)
        except Exception as exc:
            raise CommandFailed(self.host, ["ssh", "-L", f"{dhost}:{dport}"], 1, str(exc)) from None
        try:
            yield "127.0.0.1", int(tun.lport)
        finally:
            tun.close()
            # the master keeps a forwarding asked for by a client after that client ends: cancel it
            spec = f"[127.0.0.1]:{tun.lport}:[{dhost}]:{dport}"
            where = [*(["-p", str(self.host.port)] if self.host.port else []),
                     *(["-l", self.host.user] if self.host.user else []), self.host.hostname]
            self._cancels.append(subprocess.Popen(["ssh", *self.opts, "-O", "cancel", "-L", spec, *where],
                                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL))

    def put(self, local, remote):
        self._scp(lambda: self.machine.upload(str(local), remote), ["scp", str(local), remote])

    def get(self, remote, local):
        self._scp(lambda: self.machine.download(remote, str(local)), ["scp", remote, str(local)])

    def _scp(self, fn, argv):
        from plumbum import ProcessExecutionError
        try:
            fn()
        except ProcessExecutionError as exc:
            raise CommandFailed(self.host, argv, exc.retcode, str(exc.stderr)) from None

    def close(self):
        for proc in self._cancels:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.machine.close()


def connect(host: Host, ssh_config: Path | None = None) -> Transport:
    return LocalTransport(host) if host.local else SSHTransport(host, ssh_config)


class Connections:
    """One transport per host for a whole run, reused by every node (an SshMachine costs ~60 ms to open).
    Each host is used by one thread at a time: fan-out gives every host its own thread."""

    def __init__(self, ssh_config: Path | None = None):
        self.ssh_config = ssh_config
        self._open: dict[Host, Transport] = {}
        self._mutex = threading.Lock()

    def get(self, host: Host) -> Transport:
        with self._mutex:
            t = self._open.get(host)
        if t is None:
            new = connect(host, self.ssh_config)
            with self._mutex:
                t = self._open.setdefault(host, new)
            if t is not new:  # another thread connected first
                new.close()
        return t

    def drop(self, host: Host) -> None:
        """Forget a host's transport after it failed to reach the host: the next use reconnects."""
        with self._mutex:
            t = self._open.pop(host, None)
        if t is not None:
            t.close()

    def close_all(self) -> None:
        with self._mutex:
            open_, self._open = list(self._open.values()), {}
        # in parallel: closing a plumbum session waits 50 ms
        threads = [threading.Thread(target=t.close) for t in open_]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
