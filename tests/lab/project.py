"""A deployed project as the integration tests drive it: a stages.ini in a temp dir (tests/lab/stages_ini.py's,
its placeholders filled in), `doit` run as a user runs it (a subprocess), and readers of the real state on
the hosts."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from .stages_ini import INI

REPO = Path(__file__).resolve().parents[2]
DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]
PASSWORD_ENV = "BLOG_DB_PASSWORD"



class Project:
    def __init__(self, workdir: Path, source: Path, hosts, ssh_config: Path, prod_db: str = "", test_db: str = "",
                 user: str = "", password: str = "", template: str = INI):
        self.workdir, self.hosts, self.password, self.template = workdir, list(hosts), password, template
        self.ini = workdir / "stages.ini"
        self.values = dict(source=source, max_age="24h", ssh_config=ssh_config, prod_db=prod_db, test_db=test_db,
                           user=user, password_env=PASSWORD_ENV, project_extra="", prod_extra="",
                           prod_stage_extra="", hosts=", ".join(h.url for h in hosts),
                           test_hosts=", ".join(h.url for h in hosts))
        self.write()

    def write(self, **changes) -> None:
        self.values.update(changes)
        self.ini.write_text(self.template.format(**self.values))

    def doit(self, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        environ = {**os.environ, "STAGES_INI": str(self.ini), PASSWORD_ENV: self.password, **(env or {})}
        return subprocess.run([*DOIT, *args], cwd=self.workdir, env=environ, capture_output=True, text=True,
                              timeout=timeout)

    def ok(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        res = self.doit(*args, env=env)
        assert res.returncode == 0, f"doit {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
        return res

    # -- the real state ----------------------------------------------------------------------------
    @staticmethod
    def link(host, link: str = "sites/test") -> str | None:
        p = host.path(f"/srv/blog/{link}")
        return os.readlink(p) if p.is_symlink() else None

    def links(self, link: str = "sites/test") -> list[str | None]:
        return [self.link(h, link) for h in self.hosts]

    def archive_sha(self, rid: str) -> str:
        return hashlib.sha256((self.workdir / "build" / f"{rid}.tar.gz").read_bytes()).hexdigest()

    @staticmethod
    def backups(host) -> list[dict]:
        d = host.path("/srv/blog/db_backup")
        metas = [json.loads(p.read_text()) for p in d.glob("*.json")] if d.is_dir() else []
        return sorted(metas, key=lambda m: m["epoch"])

    @staticmethod
    def log(host) -> list[dict]:
        p = host.path("/srv/blog/.deploy/releases.jsonl")
        return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def tree(root: Path) -> dict:
    """Every path under root with what a write would change: type, size, mode, mtime, link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            # taking and releasing the run's lock (.deploy/lock, renamed in and removed) touches .deploy
            mtime = None if name == ".deploy" else st.st_mtime_ns
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, mtime,
                                              os.readlink(p) if p.is_symlink() else None)
    return out
