"""SSH hosts (docs/testing.md, "The lab"): real fake hosts, each one OpenSSH sshd on 127.0.0.1 with its own
port, running in its own mount namespace where a per-host directory is bind-mounted on /srv:

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
"""
from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .common import HarnessError, die_with_us, free_port, wait_for_port, write_atomic

SSHD = "/usr/sbin/sshd"
DEPLOY_USER = "deploy"
CONTROL_PATH = "/tmp/dst-cm-%C"          # short: unix socket paths are limited to 107 bytes
HOST_PATH = "/usr/local/bin:/usr/bin:/bin"


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


def _keygen(path: Path, comment: str) -> str:
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)                  # ssh-keygen would ask before overwriting
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[0:2])   # "type base64"



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
        write_atomic(self.sshd_config, "\n".join([
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
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_us())
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
        """argv of an ssh call to this host through the lab's ssh_config. NB: ssh joins the
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
        write_atomic(path, self.public_key + "\n", 0o600)
        os.chown(path, self.deploy.pw_uid, self.deploy.pw_gid)
        return path

    def _write_client_files(self) -> None:
        write_atomic(self.known_hosts, "".join(h.known_hosts_line + "\n" for h in self.hosts.values()))
        write_atomic(self.ssh_config, self.client_config(self.known_hosts))

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
        # DST_TEST_KEX (tests/integration/conftest.py sets curve25519-sha256): the suite's many logins skip
        # OpenSSH's post-quantum default, ~90 ms of client CPU each; the tool's own default is tested in
        # test_transport.
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

