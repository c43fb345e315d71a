"""One persistent `ssh host sh` per host for a whole run, and a tiny framed protocol over it.

Every command of a run travels over the same ssh process and so over one SSH connection (what sshd logs
as one "Accepted publickey"): a command costs a fork on the host instead of a new ssh process here
(~1 ms instead of ~8 ms through a master connection, ~200 ms without one).

The remote side is a plain `sh` reading its program from stdin, under the run's watchdog (watchdog.py: when
the connection goes away, what the session runs is ended). Each command is sent as program text
built by `request`: the argv with every word single-quoted (so the shell gives the program exactly these
arguments and runs no second command; values are never formatted into a script), in a subshell, with
stdin from /dev/null or from the given bytes (base64 in a here-document). After it, the session prints a
random per-session token and the exit code on stdout, and the token on stderr: a command's output is
what precedes the token on each stream (the token lives in the session shell only, never in a command's
arguments or environment).
"""
from __future__ import annotations

import glob
import os
import secrets
import selectors
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .watchdog import SESSION, Watched, parse_ident

# the remote program is read from stdin by sh itself (dash parses a pipe in blocks: no byte-wise reads)
REMOTE = SESSION
CHUNK = 1 << 16
GO = -1   # what _take_out returns for "<token>.<seq> go"
INLINE_MAX = 1 << 18   # input up to this size (and without NUL) travels inside the command's text
SKIPPED = 254   # the exit code of a batch's command that did not run: the one before it failed (Cmd.if_ok)


def control_path() -> str:
    sockdir = Path(f"/tmp/doit-stages-{os.getuid()}")
    sockdir.mkdir(mode=0o700, exist_ok=True)
    return f"{sockdir}/%C"


# OpenSSH's own key exchange is the default: since 9.0 the post-quantum hybrid (sntrup761x25519; 10.0:
# mlkem768x25519), against traffic recorded now and decrypted later, and these connections carry database
# passwords. ssh_fast_kex = yes puts curve25519 (what paramiko, so pyinfra, uses) at the head of the default
# list ('^'): ~115 ms less client CPU per login here. A KexAlgorithms in the user's ssh_config wins either way.
FAST_KEX = "KexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org"


def ssh_options(ssh_config: Path | None, fast_kex: bool = False) -> list[str]:
    """Host keys are checked, never accepted blindly; one master connection per host is shared with the
    other ssh clients of a run (testinfra in verify), so they open no connection of their own."""
    opts = ["-F", str(ssh_config)] if ssh_config else []
    written = config_keywords(ssh_config)
    if fast_kex and "kexalgorithms" not in written:
        opts += ["-o", FAST_KEX]
    # the master outlives the run 60 s (a command within them logs in no more: 2 round trips, not 9),
    # unless the ssh config says how long (a CI pipeline's steps minutes apart: longer; `no`: never)
    persist = [] if "controlpersist" in written else ["-o", "ControlPersist=60"]
    return opts + ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
                   "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path()}", *persist,
                   "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]


def through_proxy(ssh_config: Path | None) -> bool:
    """Does the ssh config (the project's, else the user's) send hosts through a ProxyJump or ProxyCommand
    (a bastion, whose MaxStartups drops new connections beyond 10 unauthenticated ones, by default)?"""
    return bool({"proxyjump", "proxycommand"} & config_keywords(ssh_config))


SYSTEM_CONFIG = Path("/etc/ssh/ssh_config")


def config_keywords(ssh_config: Path | None) -> set[str]:
    """The keywords (lowercase) the ssh config sets, in any Host or Match block, to anything but `none`: the
    files ssh reads, `-F ssh_config` or else ~/.ssh/config and /etc/ssh/ssh_config, and those they Include
    (globs; a relative path is in ~/.ssh from a user's file, in /etc/ssh from the system's: ssh_config(5)).
    Comments are no setting. A file that cannot be read sets nothing, as for ssh."""
    found: set[str] = set()
    user = Path.home() / ".ssh"
    roots = [(ssh_config, user)] if ssh_config else [(user / "config", user), (SYSTEM_CONFIG, SYSTEM_CONFIG.parent)]
    for path, base in roots:
        _read_config(path, base, found, 0)
    return found


def _read_config(path: Path, base: Path, found: set[str], depth: int) -> None:
    if depth > 16:   # ssh's own bound on nested Includes
        return
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        words = line.strip().replace("=", " ", 1).split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        key, value = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
        if key == "include":
            for pattern in value.split():
                pattern = os.path.expanduser(pattern.strip('"'))
                full = pattern if pattern.startswith("/") else str(base / pattern)
                for match in sorted(glob.glob(full)):
                    _read_config(Path(match), base, found, depth + 1)
        elif value.strip('"').lower() != "none":
            found.add(key)


def ssh_argv(hostname: str, user: str | None, port: int | None, options: Sequence[str],
             remote: Sequence[str] = (), tty: bool = False) -> list[str]:
    """ssh's argv. The user goes with -l and the port with -p (each the argument of its option), and `--`
    ends the options before the host name: a host or user starting with '-' is never read as an option.
    tty: a terminal on the host (-t, an interactive console) instead of none (-T)."""
    argv = ["ssh", *options, "-t" if tty else "-T"]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", str(port)]
    return argv + ["--", hostname, *remote]


@dataclass
class Stream:
    """Input too big to hold in memory: `size` bytes in all, read from `chunks` as they are sent.
    reads_all: the command reads its stdin to the end whatever happens (a failed write still drains it), so
    the session need not drain what it left (no cat runs after it)."""
    chunks: Iterable[bytes]
    size: int
    reads_all: bool = False


@dataclass(frozen=True)
class Cmd:
    """One command of a batch (RemoteShell.run_many): argv, its input (a short text, inline) and whether it
    runs only when the command before it in the batch exited 0 (if_ok; else its code is SKIPPED)."""
    argv: Sequence[str]
    input: bytes | None = None
    if_ok: bool = False


class ShellGone(Exception):
    """The ssh process ended (or a command did not answer in time): the host is unreachable."""

    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr


class RemoteShell:
    """The ssh process running the session's sh. Not thread-safe: the caller serialises commands."""

    def __init__(self, argv: list[str], timeout: float = 60.0):
        self.token = secrets.token_hex(16).encode()
        self.seq = 0
        self.proc = subprocess.Popen([*argv, REMOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            os.set_blocking(f.fileno(), False)
        self._out, self._err = b"", b""
        self._on_line = None
        t = self.token.decode()
        # The hello is not waited for: the first command follows it in the same stream, and that command's
        # exchange reads the hello's answer too (one round trip less a session: through a master connection,
        # the channel's opening and then the first command's answer). Until the hello's answer came, the
        # connection has `timeout` seconds (the login's bound) to give it; a login that fails is the first
        # command's ShellGone, with what ssh said.
        hello = f"__dst_tok={t}; printf '%s.0 0\\n' \"$__dst_tok\"; printf '%s.0\\n' \"$__dst_tok\" >&2\n"
        self._unsent = hello.encode()
        self._hello: float | None = time.monotonic() + timeout   # its deadline; None once answered
        self.watched: Watched | None = None   # what the hello's answer said (session: waits for it)
        self._send_unsent()

    @property
    def session(self) -> Watched | None:
        """The watchdog's first words: which process on the host is this session (the run's locks record it).
        Read with the first command's answer; asked before any command, it waits for the hello's."""
        self.greet()
        return self.watched

    @property
    def greeting(self) -> bool:
        """The hello's answer has not come yet (its stderr: the watchdog's words)."""
        return self._hello is not None and self.proc.poll() is None

    @property
    def never_answered(self) -> bool:
        """The connection ended (or was given up) before the hello's answer: the login never succeeded."""
        return self._hello is not None

    def greet(self) -> None:
        """Wait for the hello's answer, when no command has read it yet (ShellGone: the login failed)."""
        if self._hello is None:
            return
        self._check_open()   # a first command that failed left it unanswered: so is the login
        if self.seq == 0:
            self._on_line = None
            self._exchange([], None)

    def _send_unsent(self) -> None:
        """The hello written now, as far as the pipe takes it (ssh sends it once the session is open)."""
        try:
            self._unsent = self._unsent[os.write(self.proc.stdin.fileno(), self._unsent):]
        except (BlockingIOError, BrokenPipeError):   # the rest goes with the first exchange, or ssh is gone
            pass

    def run(self, argv: Sequence[str], input: "bytes | Stream | None" = None,
            timeout: float | None = None, on_line=None) -> tuple[int, bytes, bytes]:
        """argv on the host: (exit code, stdout, stderr), with input (if any) on its stdin. on_line(stream,
        line), if given, sees each complete line of "out" and "err" as it arrives (progress, events)."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._on_line, self._seen = on_line, {"out": len(self._out), "err": len(self._err)}
        if input is None or isinstance(input, bytes) and len(input) <= INLINE_MAX and b"\0" not in input:
            return self._exchange([request(argv, self._next(), inline=input)], deadline)
        chunks, size = (input.chunks, input.size) if isinstance(input, Stream) else ([input], len(input))
        reads_all = isinstance(input, Stream) and input.reads_all
        # the command starts and says "go" before the bytes are sent: the session shell, blocked on the
        # command, has read nothing beyond the command's text, so the bytes reach the command only
        code, _, _ = self._exchange([request(argv, self._next(), size=size, reads_all=reads_all)], deadline,
                                    want_err=False)
        if code != GO:
            raise ShellGone("the session lost its place in the stream")
        return self._exchange(chunks, deadline)

    def run_many(self, commands: Sequence[Cmd], timeout: float | None = None,
                 on_line=None) -> list[tuple[int, bytes, bytes]]:
        """Several commands in ONE exchange: their texts are sent together, the session's shell runs them one
        after another, and the answers come back in order (one network round trip instead of one each).
        Each command's input is inline (short, no NUL: INLINE_MAX); one marked if_ok runs only when the
        command before it exited 0, else its code is SKIPPED and it printed nothing. on_line(stream, line),
        if given, sees each complete line the commands print as it arrives (never a marker line)."""
        self._check_open()
        for c in commands:
            if c.input is not None and (len(c.input) > INLINE_MAX or b"\0" in c.input):
                raise ValueError("a batch's input travels inline: at most INLINE_MAX bytes, no NUL")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._on_line, self._seen = on_line, {"out": len(self._out), "err": len(self._err)}
        first = self.seq + 1
        text = b"".join(request(c.argv, self._next(), inline=c.input, if_ok=c.if_ok) for c in commands)
        # the last command's answer (its markers) ends the exchange; what precedes it is the others' answers
        code, out, err = self._exchange([text], deadline, stale=False)
        answers = []
        for seq in range(first, self.seq):
            o, c, out = self._cut(out, seq, True)
            e, _, err = self._cut(err, seq, False)
            answers.append((c, o, e))
        answers.append((code, self._after_stale(out), self._after_stale(err)))
        return answers

    def _check_open(self) -> None:
        if self.proc.poll() is not None or self.proc.stdin.closed:
            # before the hello's answer: the login failed, and what ssh said is the reason
            raise ShellGone(self._gone() if self._hello is not None else "the connection is closed")

    def _cut(self, data: bytes, seq: int, out: bool) -> tuple[bytes, int, bytes]:
        """(what command `seq` printed, its exit code (stdout's marker), the rest after its marker line)."""
        mark = self.token + (b".%d " % seq if out else b".%d\n" % seq)
        i = data.find(mark)
        if i < 0:
            raise ShellGone("the session lost its place in a batch's answers")
        j = data.find(b"\n", i + len(mark) - 1)
        code = int(data[i + len(mark):j]) if out else 0
        return self._after_stale(data[:i]), code, data[j + 1:]

    def _exchange(self, frames: Iterable[bytes], deadline: float | None, want_err: bool = True,
                  stale: bool = True):
        """Send the frames while reading both streams until each shows the token; never blocks on one pipe."""
        sel = selectors.DefaultSelector()
        out_fd, err_fd, in_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno(), self.proc.stdin.fileno()
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        pending, frames = self._unsent, iter(frames)
        self._unsent = b""
        sel.register(in_fd, selectors.EVENT_WRITE)
        out, err = None, None if want_err else b""
        try:
            while out is None or err is None:
                # until the hello is answered, the login's bound too
                ends = [d for d in (deadline, self._hello) if d is not None]
                wait = min(ends) - time.monotonic() if ends else None
                if wait is not None and wait <= 0:
                    raise ShellGone("no answer in time; gave up on the connection")
                for key, _ in sel.select(wait):
                    if key.fd == in_fd:
                        if not pending:
                            pending = next(frames, b"")
                        if not pending:
                            sel.unregister(in_fd)
                            continue
                        try:
                            pending = pending[os.write(in_fd, pending[:CHUNK]):]
                        except BrokenPipeError:
                            raise ShellGone(self._gone()) from None
                        continue
                    data = os.read(key.fd, CHUNK)
                    if not data:
                        raise ShellGone(self._gone())
                    if key.fd == out_fd:
                        self._out += data
                        self._lines("out", self._out, out)
                        out = self._take_out(len(self._out) - len(data), stale) if out is None else out
                    else:
                        self._err += data
                        if self._hello is not None:
                            self._heard_hello()
                        self._lines("err", self._err, err)
                        err = self._take_err(len(self._err) - len(data), stale) if err is None else err
        except ShellGone:
            self.kill()
            raise
        finally:
            sel.close()
        return out[0], out[1], err

    def _heard_hello(self) -> None:
        """The hello's answer, as it arrives (before any command's): its marker on stderr, the watchdog's
        words before it saying which process this session is. (Its stdout marker, printed first by the same
        shell, is dropped with the first command's leftovers.)"""
        mark = self.token + b".0\n"
        i = self._err.find(mark)
        if i >= 0:
            self._hello = None
            self.watched = parse_ident(self._err[:i].decode(errors="replace"))
            if self._on_line is not None:   # never handed to a command's on_line
                self._seen["err"] = max(self._seen["err"], i + len(mark))

    def _lines(self, which: str, buf: bytes, done) -> None:
        """Hand the complete lines that arrived (never a marker line, nor the watchdog's words) to the
        caller's on_line."""
        if self._on_line is None or done is not None or which == "err" and self._hello is not None:
            return
        start = min(self._seen[which], len(buf))
        end = buf.rfind(b"\n", start) + 1
        if end <= start:
            return
        for line in buf[start:end].splitlines():
            if self.token not in line:
                self._on_line(which, line.decode(errors="replace"))
        self._seen[which] = end

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _take_out(self, new: int, stale: bool = True):
        """(exit code or GO, what preceded the marker: without an earlier command's leftovers when stale)."""
        mark = self.token + b".%d " % self.seq
        i = self._out.find(mark, max(0, new - len(mark)))
        j = self._out.find(b"\n", i)
        if i < 0 or j < 0:
            return None
        data, tail, self._out = self._out[:i], self._out[i + len(mark):j], self._out[j + 1:]
        return (GO if tail == b"go" else int(tail)), self._after_stale(data) if stale else data

    def _take_err(self, new: int, stale: bool = True):
        mark = self.token + b".%d\n" % self.seq
        i = self._err.find(mark, max(0, new - len(mark)))
        if i < 0:
            return None
        data, self._err = self._err[:i], self._err[i + len(mark):]
        return self._after_stale(data) if stale else data

    def _after_stale(self, data: bytes) -> bytes:
        """Drop what an earlier command left (one whose wait was interrupted, e.g. by SIGTERM): its output
        ends with its own marker line, before this command's output."""
        k = data.rfind(self.token + b".")
        return data if k < 0 else data[data.find(b"\n", k) + 1:]

    def _gone(self) -> str:
        """What ssh said before it ended (e.g. "Connection refused", "Host key verification failed")."""
        try:
            self.proc.wait(timeout=5)
            rest = self.proc.stderr.read() or b""
        except (subprocess.TimeoutExpired, OSError, ValueError):
            rest = b""
        return (self._err + rest).decode(errors="replace").replace(self.token.decode(), "").strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def let_go(self) -> None:
        """The run's end: EOF on the loop's stdin, without waiting for the ssh process to end. After the last
        answer nothing runs in the session; the channel's EOF and close (two round trips on a WAN) finish
        after this process has exited (the mux client and the master own them)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        """End the loop (EOF on its stdin) and the ssh process; the master connection stays for ControlPersist."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


def quote(word: bytes) -> bytes:
    """Always single-quoted, so no word is ever read as a reserved word ('if', '!', '{') or an operator."""
    return b"'" + word.replace(b"'", b"'\\''") + b"'"


def command_text(argv: Sequence[str]) -> bytes:
    """The argv as shell words. `sh -c SCRIPT NAME ARGS...` (how steps run a script) is run by the session
    shell itself, in the command's subshell, with ARGS as its positional parameters: no exec of another sh.
    (A script using $$ gets its own sh, since $$ would be the session's pid for every command.)"""
    if len(argv) >= 3 and argv[0] == "sh" and argv[1] == "-c" and "$$" not in argv[2]:
        words = b" ".join(quote(a.encode()) for a in argv[4:])
        return (b"set -- " + words + b"; " if words else b"set --; ") + b"eval " + quote(argv[2].encode())
    return b" ".join(quote(a.encode()) for a in argv)


# after each command: "<token>.<seq> <exit code>" on stdout, "<token>.<seq>" on stderr; the code is kept in
# the session's $__dst_rc for the next command of a batch (Cmd.if_ok)
TAIL = (b'; __dst_rc=$?; printf \'%%s.%d %%s\\n\' "$__dst_tok" "$__dst_rc"; '
        b'printf \'%%s.%d\\n\' "$__dst_tok" >&2\n')


def request(argv: Sequence[str], seq: int, size: int | None = None, inline: bytes | None = None,
            reads_all: bool = False, if_ok: bool = False) -> bytes:
    """The program text of one command: it runs in a subshell (a `cd` or `exit` in it leaves the session
    alone); its stdin is /dev/null, or `inline` (printed by the printf builtin from a quoted word: no NUL),
    or exactly `size` bytes of the session's stream (after the command said "go"; the rest of them is
    drained when the command reads less, so the stream never loses its place; a command that reads_all
    drains them itself); then the token and the exit code are printed on stdout, and the token on stderr."""
    cmd = b"( unset __dst_tok __dst_rc; " + command_text(argv) + b" )"
    if inline is not None:
        cmd = b"printf '%s' " + quote(inline) + b" | " + cmd
    elif size is None:
        cmd += b" </dev/null"
    elif reads_all:
        cmd = b"( printf '%%s.%d go\\n' \"$__dst_tok\"; head -c %d | %s )" % (seq, int(size), cmd)
    else:
        cmd = (b"( printf '%%s.%d go\\n' \"$__dst_tok\"; head -c %d | { %s; r=$?; cat >/dev/null; exit $r; } )"
               % (seq, int(size), cmd))
    if if_ok:   # a batch's command that runs only when the one before it exited 0
        cmd = b'if [ "${__dst_rc:-0}" = 0 ]; then ' + cmd + b"; else (exit %d); fi" % SKIPPED
    return cmd + TAIL % (seq, seq)
