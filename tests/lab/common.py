"""What every part of the lab shares: the password that breaks naive quoting, the lab's error, free ports on
127.0.0.1, servers that die with the test process, atomic writes, and a scan of every command line.
Plain helpers; no pytest here."""
from __future__ import annotations

import ctypes
import glob
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable

PORT_RANGE = (20000, 30000)              # below Linux's ephemeral range (32768-60999)

# A password that breaks every naive quoting: a space, ; $(...) a backquote, both quotes, # and a
# backslash. If anything hands it to a shell, /tmp/pwned appears (the tests look for it).
NASTY_PASSWORD = "p w;$(touch /tmp/pwned)`id`'\"#\\x"


class HarnessError(RuntimeError):
    """The machine cannot provide what the tests need (say what is missing and how to get it)."""


# --------------------------------------------------------------------------------------------- helpers

def _set_pdeathsig() -> None:
    """In the child before exec: die with SIGTERM when the test process dies (kept across exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)        # PR_SET_PDEATHSIG


def die_with_us():
    """preexec_fn for servers: tied to the main thread only, because the kernel sends the signal when
    the *thread* that forked exits (a server started from a worker thread would die with that thread)."""
    return _set_pdeathsig if threading.current_thread() is threading.main_thread() else None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, outside the ephemeral range, not handed out before by this process.
    (Still a race with other processes: callers retry when the server reports the port taken.)"""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    with _ports_lock:
        for _ in range(1000):
            port = rng.randrange(*PORT_RANGE)
            if port not in _ports_handed_out and _port_is_free(port):
                _ports_handed_out.add(port)
                return port
    raise HarnessError(f"no free TCP port in {PORT_RANGE} on 127.0.0.1")


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0,
                  banner: bytes | None = None) -> None:
    """Wait until 127.0.0.1:port accepts (and, with banner, sends a line starting with it)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"process {proc.args!r} exited {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if banner is None:
                    return
                s.settimeout(2)
                if s.recv(64).startswith(banner):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise HarnessError(f"nothing answered on 127.0.0.1:{port} within {timeout}s")
        time.sleep(0.01)

def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)



class CmdlineScan:
    """While in its `with` block, every process's command line (/proc/*/cmdline) is read over and over for
    any of `needles` (default: NASTY_PASSWORD, raw and URL-encoded); `seen` holds the lines that had one."""

    def __init__(self, needles: Iterable[bytes] | None = None):
        from urllib.parse import quote
        self.needles = list(needles) if needles is not None else [
            NASTY_PASSWORD.encode(), quote(NASTY_PASSWORD, safe="").encode()]
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scan)

    def _scan(self) -> None:
        while not self._stop.is_set():
            for f in glob.glob("/proc/[0-9]*/cmdline"):
                try:
                    with open(f, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                if any(n in data for n in self.needles):
                    self.seen.append(data[:300].decode(errors="replace"))

    def __enter__(self) -> "CmdlineScan":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

