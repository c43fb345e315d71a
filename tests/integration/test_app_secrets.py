"""[env] and [secrets] (env:, file:, command:) on real sshd hosts: the values land in the release's 0600 env
file and nowhere else (not on any argv of either machine, not in doit's dep file, the output, the release
log or any other file on the hosts); a changed secret is a new env version that goes live only by the
switch; a secret that cannot be read stops the run before any host is touched, naming it, while doit list
and doit status need none. The blog on web1 and web2, deploy:test only."""
from __future__ import annotations

import os
import re
import secrets
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from tests.lab.argv_recorder import recorded_argvs
from tests.lab.common import CmdlineScan
from tests.lab.project import DOIT, PASSWORD_ENV, REPO, tree

ENV_VAR = "DST_APP_SECRET_KEY"
APP_ENV = """
[env]
APP_GREETING = hello world   ; a comment
APP_MODE = all

[env:test]
APP_MODE = test

[secrets]
SECRET_KEY = env:DST_APP_SECRET_KEY
FILE_TOKEN = file:secrets/file-token

[secrets:test]
COMMAND_TOKEN = command:sh get-token.sh 'the token'
"""


def write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(value + "\n")
    os.chmod(path, 0o600)


@pytest.fixture(scope="module")
def world(blog_world):
    p = blog_world["project"]
    values = {k: f"{k.lower()}-{secrets.token_hex(8)}" for k in ("SECRET_KEY", "FILE_TOKEN", "COMMAND_TOKEN")}
    write_secret(p.workdir / "secrets" / "file-token", values["FILE_TOKEN"])
    write_secret(p.workdir / "secrets" / "the token", values["COMMAND_TOKEN"])
    # the command reads its file (named by its argument) and prints it: the value is never on its argv
    (p.workdir / "get-token.sh").write_text('exec cat "secrets/$1"\n')
    p.template += APP_ENV
    p.write()
    return {**blog_world, "values": values}


def recorded_doit(p, log: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """doit args, as Project.doit runs it, under tests/lab/argv_recorder.py (every argv into log)."""
    environ = {**os.environ, "STAGES_INI": str(p.ini), PASSWORD_ENV: p.password,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    argv = [DOIT[0], "-m", "tests.lab.argv_recorder", str(log), *DOIT[3:], *args]
    return subprocess.run(argv, cwd=p.workdir, env=environ, capture_output=True, text=True, timeout=600)


def files_holding(root: Path, values) -> list[str]:
    """Every file under root (links not followed) whose bytes hold one of the values."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            f = Path(dirpath, name)
            if f.is_symlink() or not f.is_file():
                continue
            data = f.read_bytes()
            if any(v.encode() in data for v in values):
                found.append(str(f.relative_to(root)))
    return found


def env_of(host, link: str = "sites/test") -> Path:
    return host.path(f"/srv/blog/{link}/.deploy-env/test.env")


def test_a_deploy_puts_env_and_secrets_into_the_env_file_only(world, tmp_path):
    p, hosts, values = world["project"], world["hosts"], world["values"]
    log = tmp_path / "argv.jsonl"
    with CmdlineScan([v.encode() for v in values.values()]) as scan:   # every process here and on the hosts
        res = recorded_doit(p, log, "deploy:test", env={ENV_VAR: values["SECRET_KEY"]})
    assert res.returncode == 0, res.stdout + res.stderr
    for h in hosts:
        env = env_of(h)
        text = env.read_bytes().decode()
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        assert "APP_GREETING='hello world'\nAPP_MODE=test\n" in text
        for name, value in values.items():
            assert f"\n{name}={shlex.quote(value)}\n" in text
        # the app sees them: an app command run as the tool runs one, with the live env
        out = h.run(["sh", "-c", 'set -a; . "$1"; printf "%s|%s" "$SECRET_KEY" "$COMMAND_TOKEN"', "sh",
                     "/srv/blog/sites/test/.deploy-env/test.env"],
                    check=True).stdout
        assert out == f"{values['SECRET_KEY']}|{values['COMMAND_TOKEN']}"
        # no other file on the host holds a value: not the release log, not shared/, not .deploy/
        found = files_holding(h.root, values.values())
        assert [f for f in found if "/.deploy-env/" not in f] == [] and found     # (the scan finds the env file)
        assert (h.root / "blog" / ".deploy" / "releases.jsonl").exists()
    argvs = recorded_argvs(log)
    assert any(w == "remote" for w, _ in argvs) and any(w == "local" for w, _ in argvs)
    assert ("local", ["sh", "get-token.sh", "the token"]) in argvs or any(
        a[-2:] == ["get-token.sh", "the token"] for _, a in argvs)
    for where, argv in argvs:
        assert not any(v in word for word in argv for v in values.values()), (where, argv)
    assert scan.seen == []
    for name in os.listdir(p.workdir):
        if name.startswith(".doit-stages"):
            data = (p.workdir / name).read_bytes()
            assert not any(v.encode() in data for v in values.values()), name
    assert (p.workdir / ".doit-stages.sqlite3").exists()
    assert not any(v in res.stdout + res.stderr for v in values.values())
    # the migration rehearsal ran with that env: its report (on the hosts: scanned above) and its output
    assert any(h.root.glob("blog/.deploy/rehearsals/*.json") for h in hosts)
    report = p.ok("rehearsal:test", env={ENV_VAR: values["SECRET_KEY"]})
    assert "rehears" in report.stdout and not any(v in report.stdout + report.stderr for v in values.values())


def test_a_changed_secret_is_a_new_env_version_live_only_after_the_switch(world):
    p, hosts, values = world["project"], world["hosts"], world["values"]
    env = {ENV_VAR: values["SECRET_KEY"]}
    p.ok("deploy:test", env=env)
    before = {h.name: (env_of(h).read_bytes(), env_of(h).stat().st_ino) for h in hosts}
    new = f"file_token-{secrets.token_hex(8)}"
    write_secret(p.workdir / "secrets" / "file-token", new)
    res = p.ok("build:test", env=env)
    assert new not in res.stdout + res.stderr
    for h in hosts:
        assert (env_of(h).read_bytes(), env_of(h).stat().st_ino) == before[h.name]   # the live one untouched
        versions = {f.name: f.read_bytes() for f in env_of(h).parent.glob("test.*.env")}
        made = [n for n, data in versions.items() if f"FILE_TOKEN={new}\n".encode() in data]
        assert len(made) == 1 and (env_of(h).parent / "test.built").read_text().split()[0] == made[0].split(".")[1]
    p.ok("switch:test", env=env)
    for h in hosts:
        assert f"FILE_TOKEN={new}\n".encode() in env_of(h).read_bytes()
        assert os.path.realpath(h.path("/srv/blog/shared/test.env")) == os.path.realpath(env_of(h)) or \
            os.path.samefile(h.path("/srv/blog/shared/test.env"), env_of(h))


def test_an_unreadable_secret_stops_the_run_before_any_host_and_list_and_status_need_none(world):
    p, hosts, values = world["project"], world["hosts"], world["values"]
    before = [tree(h.root) for h in hosts]
    res = p.doit("deploy:test")                                  # DST_APP_SECRET_KEY not set
    assert res.returncode != 0
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and re.fullmatch(rf"ERROR: stages\.ini:\d+: \[secrets\] SECRET_KEY: environment variable "
                                            rf"{ENV_VAR} is not set; export it before running doit", lines[0]), lines
    path = p.workdir / "secrets" / "file-token"
    os.chmod(path, 0o644)
    try:
        res = p.doit("build:test", env={ENV_VAR: values["SECRET_KEY"]})
    finally:
        os.chmod(path, 0o600)
    assert res.returncode != 0 and "[secrets] FILE_TOKEN" in res.stderr and "readable by every user" in res.stderr
    res = p.doit("deploy:test", env={ENV_VAR: values["SECRET_KEY"], "PATH": "/nonexistent"})
    assert res.returncode != 0 and "[secrets:test] COMMAND_TOKEN: command:sh failed (exit 127)" in res.stderr, \
        res.stderr
    assert [tree(h.root) for h in hosts] == before
    assert p.ok("list").stdout and "test" in p.ok("status").stdout
