"""Test harness: real fake hosts, a real nginx, a real MariaDB. Plain helpers; no pytest here.

Hosts (docs/testing.md, "The lab"): each host is one OpenSSH sshd on 127.0.0.1 with its own port,
running in its own mount namespace where a per-host directory is bind-mounted on /srv:

    unshare -m --propagation private sh -c 'mount --bind <hostdir> /srv && exec sshd -D -e -p PORT -f CFG'

So every host has the same absolute deploy_root (/srv/...) on a separate filesystem tree, and a host can
be killed alone. Everything runs as root; the hosts are logged into as the unprivileged user `deploy`.

    hosts = SshHosts(base_dir, names=("web1", "web2"))
    web1 = hosts["web1"]
    web1.url                        # "ssh://deploy@127.0.0.1:PORT"
    hosts.ssh_config                # OpenSSH client config: key, strict known_hosts, ControlMaster
    web1.path("/srv/blog/sites")    # the same directory seen from here (hostdir/blog/sites)
    web1.run(["ls", "/srv"])        # inside web1's namespace, as deploy
    web1.kill(); web1.start()       # the host goes down (every process in it), then up again
    web1.kill_sessions()            # every session on it dies; the host stays up
    web1.restart(session_env={"http_proxy": "http://127.0.0.1:9"})   # sshd SetEnv for its sessions
    hosts.add("web3")               # one more host, configs rewritten
    hosts.stop()

S3: `S3Server()` is moto's real S3 HTTP API on 127.0.0.1 (path-style), with a log of the requests it got.

MariaDB: `MariaDB()` talks to 127.0.0.1:3306 as root with no password (mysql-connector-python, pure).
`write_option_file()` writes a [client] file for the mariadb / mysqldump command-line tools.
"""
from __future__ import annotations

import atexit
import ctypes
import glob
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator, Sequence

SSHD = "/usr/sbin/sshd"
NGINX = "/usr/sbin/nginx"
DEPLOY_USER = "deploy"
CONTROL_PATH = "/tmp/dst-cm-%C"          # short: unix socket paths are limited to 107 bytes
HOST_PATH = "/usr/local/bin:/usr/bin:/bin"
PORT_RANGE = (20000, 30000)              # below Linux's ephemeral range (32768-60999)

MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306

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


def _die_with_us():
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


def mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_mount_ns(ns: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and mount_ns(int(entry)) == ns:
            pids.append(int(entry))
    return pids


def require_tools() -> None:
    """Fail loudly (never skip) when the machine cannot run the hosts."""
    if os.geteuid() != 0:
        raise HarnessError("the SSH host harness needs root (unshare -m, mount --bind, sshd); run the "
                           "tests as root, with ./scripts/test")
    missing = [t for t in (SSHD, "unshare", "nsenter", "runuser", "mount", "ssh", "ssh-keygen", "useradd")
               if not (os.access(t, os.X_OK) if t.startswith("/") else shutil.which(t))]
    if missing:
        raise HarnessError(f"missing {', '.join(missing)}: run ./scripts/test, which installs "
                           "openssh-server and util-linux")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        raise HarnessError(f"cannot create a mount namespace (unshare -m): {probe.stderr.strip()}")


_user_lock = threading.Lock()


def ensure_deploy_user(name: str = DEPLOY_USER) -> pwd.struct_passwd:
    """The unprivileged login user of every host: home dir, /bin/bash, and a password field of '*'
    (no password, but not the '!' of a locked account, which sshd refuses with UsePAM no)."""
    with _user_lock:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            r = subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name],
                               capture_output=True, text=True)
            if r.returncode not in (0, 9):          # 9: created meanwhile by another test run
                raise HarnessError(f"useradd {name} failed: {r.stderr.strip()}") from None
            pw = pwd.getpwnam(name)
        with open("/etc/shadow") as f:
            field = next((line.split(":")[1] for line in f if line.split(":")[0] == name), "")
        if field.startswith("!") or field == "":
            subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
        home = Path(pw.pw_dir)
        if not home.is_dir():
            home.mkdir(mode=0o755, parents=True)
            os.chown(home, pw.pw_uid, pw.pw_gid)
        return pw


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _keygen(path: Path, comment: str) -> str:
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)                  # ssh-keygen would ask before overwriting
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[0:2])   # "type base64"


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


# ------------------------------------------------------------------------------------------ SSH hosts

class SshHost:
    """One fake host: an sshd on 127.0.0.1:port in its own mount namespace, /srv = self.root."""

    def __init__(self, hosts: "SshHosts", name: str, port: int):
        self.hosts = hosts
        self.name = name
        self.port = port
        self.dir = hosts.base / "hosts" / name         # host key, sshd_config, sshd.log
        self.root = self.dir / "srv"                   # what the host sees as /srv
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        os.chown(self.root, hosts.deploy.pw_uid, hosts.deploy.pw_gid)
        os.chmod(self.root, 0o755)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.public_host_key = _keygen(self.host_key, f"{name}-hostkey")
        self.sshd_config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self._proc: subprocess.Popen | None = None
        self._ns: str | None = None
        # variables sshd sets in every session of this host (sshd_config SetEnv), e.g. a proxy that cuts
        # the host off from a server; applied by the next start()
        self.session_env: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<SshHost {self.name} {self.url} {'up' if self.running else 'down'}>"

    # -- identity
    @property
    def url(self) -> str:
        return f"ssh://{self.hosts.user}@127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return "127.0.0.1"

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.public_host_key}"

    @property
    def pid(self) -> int:
        """The pid of this host's listening sshd (its mount namespace is the host)."""
        if not self.running:
            raise HarnessError(f"host {self.name} is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def path(self, remote: str | os.PathLike) -> Path:
        """The local path of a path under /srv on this host (symlinks are not resolved; relative links
        such as sites/current -> ../releases/x resolve the same from here)."""
        remote = os.path.normpath(str(remote))
        if remote == "/srv":
            return self.root
        if not remote.startswith("/srv/"):
            raise ValueError(f"{remote}: only /srv differs between hosts; use a path under /srv")
        return self.root / remote[len("/srv/"):]

    # -- lifecycle
    def _write_sshd_config(self) -> None:
        _write_atomic(self.sshd_config, "\n".join([
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            "PidFile none",
            f"AuthorizedKeysFile {self.hosts.authorized_keys}",
            f"AllowUsers {self.hosts.user}",
            "PermitRootLogin no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes yes",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "MaxSessions 100",
            "MaxStartups 100:30:200",
            "Subsystem sftp internal-sftp",
            "AcceptEnv LANG LC_*",
            "LogLevel INFO",
            # every session on this host gets these: the hosts' common env (e.g. proxies that cut them off
            # from the network) and this host's own (session_env)
            *([f"SetEnv {' '.join(f'{k}={v}' for k, v in {**self.hosts.env, **self.session_env}.items())}"]
              if {**self.hosts.env, **self.session_env} else []),
            "",
        ]))

    def start(self, timeout: float = 10.0) -> "SshHost":
        """Start (or restart after kill()) this host's sshd on its port, in a new mount namespace."""
        if self.running:
            return self
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)    # sshd's privilege separation dir
        self._write_sshd_config()
        log = open(self.log, "ab")
        try:
            self._proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c",
                 'mount --bind "$1" /srv && exec "$2" -D -e -p "$3" -f "$4"', "sh",
                 str(self.root), SSHD, str(self.port), str(self.sshd_config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_us())
        finally:
            log.close()
        try:
            wait_for_port(self.port, self._proc, timeout=timeout, banner=b"SSH-2.0-")
        except HarnessError as e:
            self._stop_proc()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise HarnessError(f"host {self.name}: sshd did not come up on port {self.port}: {e}\n  "
                               + "\n  ".join(tail)) from None
        self._ns = mount_ns(self._proc.pid)
        self._pin_ns()
        if self._ns is None or self._ns == mount_ns(os.getpid()):
            self._stop_proc()
            self._unpin_ns()
            raise HarnessError(f"host {self.name}: sshd is not in a mount namespace of its own")
        return self

    def restart(self, session_env: dict[str, str] | None = None) -> "SshHost":
        """kill(), then start() with these session variables (None: keep them)."""
        if session_env is not None:
            self.session_env = dict(session_env)
        self.kill()
        return self.start()

    def close_master(self) -> None:
        """Close the ControlMaster connection that ssh -F ssh_config keeps to this host, if any."""
        subprocess.run(["ssh", "-F", str(self.hosts.ssh_config), "-O", "exit", "-p", str(self.port),
                        "127.0.0.1"], capture_output=True, stdin=subprocess.DEVNULL, timeout=10)

    def kill(self) -> None:
        """The host goes down: close our ControlMaster to it, then SIGKILL every process in its mount
        namespace (the listening sshd, every session, and whatever was started in it, nginx too).
        Existing connections drop at once. Files under root stay; start() brings it back."""
        if self._proc is None:
            return
        try:
            self.close_master()
        except subprocess.TimeoutExpired:
            pass
        ns = self._ns
        if ns is not None and ns != mount_ns(os.getpid()):
            deadline = time.monotonic() + 10
            while True:
                pids = [p for p in pids_in_mount_ns(ns) if p != os.getpid()]
                if not pids:
                    break
                for p in pids:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self._proc.poll()                  # reap our own child so it leaves /proc
                if time.monotonic() > deadline:
                    raise HarnessError(f"host {self.name}: processes {pids} survive SIGKILL")
                time.sleep(0.01)
        self._stop_proc()
        self._unpin_ns()
        self._ns = None

    def kill_sessions(self) -> None:
        """Every session on the host dies (SIGKILL to every process in its mount namespace but the listening
        sshd): connections drop, what they ran ends, and the host stays up for new ones."""
        if not self.running or self._ns is None or self._ns == mount_ns(os.getpid()):
            raise HarnessError(f"host {self.name} is not running")
        keep = {os.getpid(), self._proc.pid}
        for p in pids_in_mount_ns(self._ns):
            if p not in keep:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _pin_ns(self) -> None:
        """Hold the host's mount namespace open (an fd on it) until kill() is done with it: a namespace
        whose last process is gone is freed, and its number (what mount_ns names) goes to the next one made,
        often another test worker's host starting that moment; kill() must never take that one for this."""
        self._unpin_ns()
        try:
            self._ns_fd = os.open(f"/proc/{self._proc.pid}/ns/mnt", os.O_RDONLY)
        except OSError:
            self._ns_fd = None
        if self._ns_fd is not None and mount_ns(self._proc.pid) != self._ns:
            self._unpin_ns()          # the process changed namespace in between: not ours to pin
            self._ns = None

    def _unpin_ns(self) -> None:
        fd, self._ns_fd = getattr(self, "_ns_fd", None), None
        if fd is not None:
            os.close(fd)

    def _stop_proc(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def write_file(self, remote: str, data: str | bytes, mode: int = 0o644) -> Path:
        """Put a file on this host as deploy would own it (parents made and owned by deploy too)."""
        local = self.path(remote)
        uid, gid = self.hosts.deploy.pw_uid, self.hosts.deploy.pw_gid
        missing = [p for p in [local.parent, *local.parent.parents] if not p.exists()]
        for d in reversed(missing):
            d.mkdir()
            os.chown(d, uid, gid)
        local.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chown(local, uid, gid)
        os.chmod(local, mode)
        return local

    def wipe(self) -> None:
        """Empty /srv of this host (as root, from outside)."""
        for child in self.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    # -- commands
    def run(self, argv: Sequence[str], *, user: str | None = DEPLOY_USER, input: str | bytes | None = None,
            check: bool = False, timeout: float = 120, env: dict | None = None,
            text: bool = True) -> subprocess.CompletedProcess:
        """Run argv on this host, as a local process in its mount namespace (no SSH involved): as
        `deploy` with a clean login-like environment, or as root with user=None. Works on a killed host
        too (then in a fresh namespace with the same /srv)."""
        argv = [str(a) for a in argv]
        if user is not None:
            home = pwd.getpwnam(user).pw_dir
            base_env = {"HOME": home, "USER": user, "LOGNAME": user, "SHELL": "/bin/bash",
                        "PATH": HOST_PATH, "LANG": "C.UTF-8"}
            base_env.update(env or {})
            argv = ["runuser", "-u", user, "--", "env", "-i",
                    *[f"{k}={v}" for k, v in base_env.items()], *argv]
        elif env:
            argv = ["env", *[f"{k}={v}" for k, v in env.items()], *argv]
        if self.running:
            full = ["nsenter", "-t", str(self._proc.pid), "-m", "--", *argv]
        else:
            full = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                    'mount --bind "$1" /srv && shift && exec "$@"', "sh", str(self.root), *argv]
        if isinstance(input, str) and not text:
            input = input.encode()
        return subprocess.run(full, input=input, capture_output=True, text=text, timeout=timeout,
                              check=check, cwd="/", stdin=None if input is not None else subprocess.DEVNULL)

    def ssh_argv(self, *command: str, options: Iterable[str] = ()) -> list[str]:
        """argv of an ssh call to this host through the harness's ssh_config. NB: ssh joins the
        command words with spaces and the remote shell parses them again."""
        return ["ssh", "-F", str(self.hosts.ssh_config), *options, "-p", str(self.port), "127.0.0.1",
                *command]

    def ssh(self, *command: str, options: Iterable[str] = (), check: bool = False,
            timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv(*command, options=options), capture_output=True, text=True,
                              timeout=timeout, check=check, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)


class SshHosts:
    """A set of fake hosts sharing one client key, known_hosts and ssh_config (all under base)."""

    def __init__(self, base: str | os.PathLike, names: Iterable[str] = ("web1", "web2"),
                 user: str = DEPLOY_USER, env: dict[str, str] | None = None):
        require_tools()
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.env = dict(env or {})           # set in every SSH session on these hosts (sshd's SetEnv)
        self.deploy = ensure_deploy_user(user)
        self.hosts: dict[str, SshHost] = {}
        client = self.base / "client"
        client.mkdir(exist_ok=True)
        os.chmod(client, 0o700)
        self.identity = client / "id_ed25519"
        self.public_key = _keygen(self.identity, f"doit-stages-tests-{os.getpid()}")
        self.known_hosts = client / "known_hosts"
        self.ssh_config = client / "ssh_config"
        self.authorized_keys = self._install_authorized_keys()
        atexit.register(self._stop_quietly)
        try:
            for name in names:
                self.add(name)
        except BaseException:
            self.stop()
            raise

    def _stop_quietly(self) -> None:
        try:
            self.stop()
        except Exception:
            pass

    def _install_authorized_keys(self) -> Path:
        """sshd reads authorized keys as the user, and StrictModes wants every directory up to the home
        owned by root or the user and not group/world-writable (so nothing under /tmp). One file per
        SshHosts in ~deploy/.ssh, so concurrent test runs do not step on each other."""
        sshdir = Path(self.deploy.pw_dir) / ".ssh"
        sshdir.mkdir(mode=0o700, exist_ok=True)
        os.chown(sshdir, self.deploy.pw_uid, self.deploy.pw_gid)
        os.chmod(sshdir, 0o700)
        for old in sshdir.glob("dst-test-*.keys"):         # left by test runs that were killed
            m = re.fullmatch(r"dst-test-(\d+)-\w+\.keys", old.name)
            if m and not Path(f"/proc/{m.group(1)}").exists():
                old.unlink(missing_ok=True)
        path = sshdir / f"dst-test-{os.getpid()}-{secrets.token_hex(4)}.keys"
        _write_atomic(path, self.public_key + "\n", 0o600)
        os.chown(path, self.deploy.pw_uid, self.deploy.pw_gid)
        return path

    def _write_client_files(self) -> None:
        _write_atomic(self.known_hosts, "".join(h.known_hosts_line + "\n" for h in self.hosts.values()))
        _write_atomic(self.ssh_config, self.client_config(self.known_hosts))

    def client_config(self, known_hosts: Path, control_path: str | None = CONTROL_PATH) -> str:
        """An OpenSSH client config for these hosts. Per-host aliases (Host web1 ...) come first."""
        lines = []
        for h in self.hosts.values():
            lines += [f"Host {h.name}", "    HostName 127.0.0.1", f"    Port {h.port}", ""]
        lines += [
            "Host *",
            f"    User {self.user}",
            f"    IdentityFile {self.identity}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    UpdateHostKeys no",
            "    CheckHostIP no",
            "    BatchMode yes",
            "    ConnectTimeout 5",
            "    LogLevel ERROR",
        ]
        # DST_TEST_KEX (tests/conftest.py sets curve25519-sha256): the suite's many logins skip OpenSSH's
        # post-quantum default, ~90 ms of client CPU each; the tool's own default is tested in test_transport.
        # The benches leave it unset: they measure the key exchange a user gets.
        if os.environ.get("DST_TEST_KEX"):
            lines.append(f"    KexAlgorithms {os.environ['DST_TEST_KEX']}")
        if control_path:
            lines += ["    ControlMaster auto", f"    ControlPath {control_path}", "    ControlPersist 30"]
        else:
            lines += ["    ControlMaster no", "    ControlPath none"]
        return "\n".join(lines) + "\n"

    def add(self, name: str) -> SshHost:
        """Start one more host (or return the one of that name, started if it was killed)."""
        if name in self.hosts:
            return self.hosts[name].start()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name):
            raise ValueError(f"host name {name!r}: letters, digits and '-'")
        for attempt in range(5):
            host = SshHost(self, name, free_port())
            try:
                host.start()
                break
            except HarnessError:
                if attempt == 4 or "Address already in use" not in host.log.read_text(errors="replace"):
                    raise
                shutil.rmtree(host.dir)            # port taken meanwhile by someone else: another one
        self.hosts[name] = host
        self._write_client_files()
        return host

    def __getitem__(self, name: str) -> SshHost:
        return self.hosts[name]

    def __iter__(self) -> Iterator[SshHost]:
        return iter(list(self.hosts.values()))

    def __len__(self) -> int:
        return len(self.hosts)

    def __enter__(self) -> "SshHosts":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def ensure_running(self) -> None:
        """Start every host that a test killed."""
        for h in self:
            h.start()

    def reset(self) -> None:
        """Every host up, and every /srv empty."""
        self.ensure_running()
        for h in self:
            h.wipe()

    def stop(self) -> None:
        """Stop every host and remove the authorized keys file."""
        errors = []
        for h in self:
            try:
                h.kill()
            except Exception as e:                 # stop the others anyway
                errors.append(f"{h.name}: {e}")
        Path(self.authorized_keys).unlink(missing_ok=True)
        if errors:
            raise HarnessError("could not stop: " + "; ".join(errors))


# ------------------------------------------------------------------------------------------------ nginx

class Nginx:
    """A real nginx serving a host's files. stop() ends it (kill() of its host ends it too)."""

    def __init__(self, host: SshHost, port: int, root_path: str, directory: Path, proc: subprocess.Popen):
        self.host, self.port, self.root_path, self.dir, self.proc = host, port, root_path, directory, proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.dir / "error.log"

    def get(self, path: str = "/", timeout: float = 5) -> tuple[int, bytes]:
        """(status, body) of a GET; an HTTP error status is returned, not raised."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(host: SshHost, port: int | None = None, root_path: str = "/srv/blog/sites/current/static",
                *, extra_server_conf: str = "", worker_user: str = "www-data",
                timeout: float = 10) -> Nginx:
    """nginx inside host's mount namespace (nsenter -t <sshd pid> -m), in the foreground, serving the
    files under root_path (a path as the host sees it) on 127.0.0.1:port. Its config, pid file, logs
    and temp dirs live in the test's directory. open_file_cache stays off and disable_symlinks off, so
    a link in root_path (sites/current) is resolved again on every request. Workers run as
    worker_user (www-data): files the tool deploys must be world-readable, as on a real server."""
    if not os.access(NGINX, os.X_OK):
        raise HarnessError(f"{NGINX} missing: run ./scripts/test, which installs nginx-light")
    port = port or free_port()
    d = host.dir / f"nginx-{port}"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    try:
        pwd.getpwnam(worker_user)
    except KeyError:
        worker_user = "nobody"
    mime = "include /etc/nginx/mime.types;" if os.path.exists("/etc/nginx/mime.types") else ""
    conf = f"""
user {worker_user};
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    open_file_cache off;
    disable_symlinks off;
    sendfile off;
    keepalive_timeout 5;
    server {{
        listen 127.0.0.1:{port};
        root {root_path};
        location / {{ }}
        {extra_server_conf}
    }}
}}
"""
    _write_atomic(d / "nginx.conf", conf)
    errlog = open(d / "stderr.log", "ab")
    try:
        proc = subprocess.Popen(
            ["nsenter", "-t", str(host.pid), "-m", "--", NGINX, "-p", str(d), "-e", str(d / "error.log"),
             "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog, preexec_fn=_die_with_us())
    finally:
        errlog.close()
    handle = Nginx(host, port, root_path, d, proc)
    try:
        wait_for_port(port, proc, timeout=timeout)
    except HarnessError as e:
        handle.stop()
        logs = [(d / n).read_text(errors="replace").strip() for n in ("stderr.log", "error.log")
                if (d / n).exists()]
        raise HarnessError(f"nginx on {host.name}:{port} did not start: {e}\n" + "\n".join(logs)) from None
    return handle


# --------------------------------------------------------------------------------------------------- S3

class S3Server:
    """moto's S3 server in a thread of this process: a real HTTP S3 API at 127.0.0.1:<free port>. It does
    not check signatures or expiry (so the tests check those rules on the tool's own code). `requests`
    holds (method, path, query) of every request it answered, from its werkzeug request log."""

    REQUEST_RE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/[\d.]+')

    def __init__(self):
        import logging

        from moto.server import ThreadedMotoServer
        self.requests: list[tuple[str, str, str]] = []
        server = self

        class Log(logging.Handler):
            def emit(self, record):
                m = S3Server.REQUEST_RE.search(record.getMessage())
                if m:
                    path, _, query = m.group(2).partition("?")
                    server.requests.append((m.group(1), path, query))
        self._handler = Log()
        self._logger = logging.getLogger("werkzeug")
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.INFO)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=True)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="harness", aws_secret_access_key="harness",
                            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))

    def objects(self, bucket: str) -> dict[str, dict]:
        """key -> {size, etag, modified, sha256 (its metadata)} of every object in the bucket."""
        c, out = self.client(), {}
        for o in c.list_objects_v2(Bucket=bucket).get("Contents", []):
            head = c.head_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"]] = {"size": o["Size"], "etag": o["ETag"], "modified": o["LastModified"],
                             "sha256": head["Metadata"].get("sha256")}
        return out

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def stop(self) -> None:
        self._server.stop()
        self._logger.removeHandler(self._handler)


# ---------------------------------------------------------------------------------------------- MariaDB

def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    if not name or "\x00" in name:
        raise ValueError(f"bad identifier {name!r}")
    return "`" + name.replace("`", "``") + "`"


def option_file_value(value: str) -> str:
    """A value for a MariaDB/MySQL option file, as the command-line tools read it (mysys my_default.c,
    checked here with mariadb and mysqldump 10.11):

      * the reader trims whitespace around the value, then strips ONE pair of matching quotes
        ('...' or "...") around it;
      * '#' starts a comment unless it is inside quotes ('...' or "..."); ';' is a comment only at the
        start of a line, so it is harmless inside a value;
      * backslash escapes are decoded in the (unquoted) value: \\\\ \\" \\' \\n \\t \\r \\b \\s (space);
        an unknown one like \\x is kept as is. Within quotes, \\" does not end the quoted part.

    So: wrap in double quotes and escape backslash and double quote (\\ -> \\\\, " -> \\"). That keeps
    spaces at the ends, ; # ' ` $( ) and backslashes. Verified for NASTY_PASSWORD and for 'a#b', ' lead',
    'trail ', "'quoted'", 'a\\nb', 'ab\\', '#'. Unquoted fails for '#', edge spaces, and backslash pairs.
    A line break cannot be written at all (a value is one line): refused.
    mysql-connector-python's own option_files= reader is different: it keeps the quotes and decodes no
    escapes (a quoted password is refused there), so these files are for the command-line tools."""
    if any(c in value for c in "\n\r\x00"):
        raise ValueError("an option-file value cannot hold a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_option_file(path: str | os.PathLike, user: str, password: str | None,
                      host: str = MARIADB_HOST, port: int = MARIADB_PORT, database: str | None = None,
                      owner: str | None = None) -> Path:
    """A [client] option file for `mariadb` / `mysqldump --defaults-extra-file=F` (which must be the
    FIRST option), mode 0600 from the start (never readable by others, even for a moment)."""
    path = Path(path)
    lines = ["[client]", f"user={option_file_value(user)}"]
    if password is not None:
        lines.append(f"password={option_file_value(password)}")
    lines += [f"host={option_file_value(host)}", f"port={int(port)}"]
    if database:
        lines.append(f"database={option_file_value(database)}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write("\n".join(lines) + "\n")
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.replace(tmp, path)
    return path


class MariaDB:
    """Root access to the test MariaDB (127.0.0.1:3306, root, no password), one connection a call."""

    def __init__(self, host: str = MARIADB_HOST, port: int = MARIADB_PORT, user: str = "root",
                 password: str = ""):
        self.host, self.port, self.user, self.password = host, port, user, password

    def connect(self, database: str | None = None, user: str | None = None, password: str | None = None):
        import mysql.connector
        kwargs = dict(host=self.host, port=self.port, user=user or self.user,
                      password=self.password if password is None else password,
                      use_pure=True, autocommit=True, connection_timeout=5)
        if database:
            kwargs["database"] = database
        return mysql.connector.connect(**kwargs)

    def ensure_running(self, timeout: float = 30) -> str:
        """Answer with the server's version, starting mariadbd (as the machine's own service is started)
        if nothing answers; a clear HarnessError if it cannot be had."""
        try:
            return self.version()
        except Exception as first:
            error = first
        if os.geteuid() == 0 and os.access("/usr/sbin/mariadbd", os.X_OK):
            Path("/run/mysqld").mkdir(exist_ok=True)
            shutil.chown("/run/mysqld", "mysql", "mysql")
            subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                            "/usr/sbin/mariadbd"], capture_output=True, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    return self.version()
                except Exception as e:
                    error = e
                    time.sleep(0.25)
        raise HarnessError(f"MariaDB does not answer at {self.host}:{self.port} as {self.user} with no "
                           f"password ({error}); ./scripts/test installs and starts it")

    def version(self) -> str:
        return self.query(None, "SELECT VERSION()")[0][0]

    def query(self, db: str | None, sql: str, params: Sequence | dict | None = None) -> list[tuple]:
        """Run one statement (in db, if given); its rows ([] for a statement without a result set)."""
        con = self.connect(db)
        try:
            cur = con.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.with_rows else []
            cur.close()
            return rows
        finally:
            con.close()

    def databases(self) -> list[str]:
        return [r[0] for r in self.query(None, "SHOW DATABASES")]

    def database_exists(self, name: str) -> bool:
        return bool(self.query(None, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                               (name,)))

    def create_database(self, name: str, *, replace: bool = False) -> None:
        if replace:
            self.drop_database(name)
        self.query(None, f"CREATE DATABASE {_ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")

    def drop_database(self, name: str) -> None:
        self.query(None, f"DROP DATABASE IF EXISTS {_ident(name)}")

    def create_user(self, user: str, password: str, dbs: Iterable[str] | str = (),
                    privileges: str = "ALL") -> None:
        """user@'127.0.0.1' and user@'localhost' (TCP and socket clients), replacing an existing one,
        with `privileges` on each of dbs."""
        if isinstance(dbs, str):
            dbs = [dbs]
        if not re.fullmatch(r"[A-Za-z ,_]+", privileges):
            raise ValueError(f"privileges {privileges!r}")
        for host in ("127.0.0.1", "localhost"):
            self.query(None, "CREATE OR REPLACE USER %s@%s IDENTIFIED BY %s", (user, host, password))
            for db in dbs:
                self.query(None, f"GRANT {privileges} ON {_ident(db)}.* TO %s@%s", (user, host))

    def drop_user(self, user: str) -> None:
        for host in ("127.0.0.1", "localhost"):
            self.query(None, "DROP USER IF EXISTS %s@%s", (user, host))

    def tables(self, db: str) -> list[str]:
        """Base tables of db (no views), sorted."""
        return sorted(r[0] for r in self.query(
            None, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                  "AND TABLE_TYPE = 'BASE TABLE'", (db,)))

    def row_counts(self, db: str) -> dict[str, int]:
        """{table: COUNT(*)} of every base table (real counts, not information_schema estimates)."""
        con = self.connect(db)
        try:
            cur = con.cursor()
            counts = {}
            for t in self.tables(db):
                cur.execute(f"SELECT COUNT(*) FROM {_ident(t)}")
                counts[t] = int(cur.fetchone()[0])
            cur.close()
            return counts
        finally:
            con.close()

    def checksums(self, db: str) -> dict[str, int | None]:
        """{table: CHECKSUM TABLE} of every base table: equal data gives equal numbers."""
        tables = self.tables(db)
        if not tables:
            return {}
        rows = self.query(db, "CHECKSUM TABLE " + ", ".join(_ident(t) for t in tables))
        return {name.split(".", 1)[1]: value for name, value in rows}

    def client_argv(self, option_file: str | os.PathLike, *args: str, tool: str = "mariadb") -> list[str]:
        """argv for a command-line tool with an option file: --defaults-extra-file comes FIRST."""
        return [tool, f"--defaults-extra-file={option_file}", *args]
