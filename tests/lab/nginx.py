"""nginx: a real one serving a host's files, inside the host's mount namespace."""
from __future__ import annotations

import os
import pwd
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from .common import HarnessError, die_with_us, free_port, wait_for_port, write_atomic
from .sshd import SshHost

NGINX = "/usr/sbin/nginx"


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
    write_atomic(d / "nginx.conf", conf)
    errlog = open(d / "stderr.log", "ab")
    try:
        proc = subprocess.Popen(
            ["nsenter", "-t", str(host.pid), "-m", "--", NGINX, "-p", str(d), "-e", str(d / "error.log"),
             "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog, preexec_fn=die_with_us())
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

