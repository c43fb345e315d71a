"""build = pip for the hosts' own Python, on two real sshd hosts, with no index at all (PIP_NO_INDEX and a
find-links directory of wheels and an sdist made here: nothing from PyPI).

The lab's hosts run /usr/bin/python3 (Debian's 3.11.2) and the deployer runs the venv's (pyenv's 3.11.7): a
requirement marked `python_full_version < "3.11.3"` is needed there and not here, and a distribution whose
newest version wants Python >= 3.11.5 must come in its older version. Also here: requirements that include
others (-r, -c) from the archive, a wheel that cannot be built (its program missing) said at `archive` in
one line, an app shipping the tool's own names, and a release killed mid-unpack. The tests run in order on
one pair of hosts. Also: the hosts' interpreter fact run on this machine."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from doit_stages.errors import StepError
from doit_stages.steps import facts, wheelhouse
from tests.lab.apprepo import AppRepo
from tests.lab.common import HarnessError
from tests.lab.project import DOIT, Project
from tests.lab.sshd import SshHosts
from tests.lab.stages_ini import CODE_ONLY, stages_ini

INI = stages_ini(CODE_ONLY)
HOSTS_PYTHON = "3.11.2"     # /usr/bin/python3 on this lab's hosts (Debian 12)


def make_wheel(where: Path, name: str, version: str, requires_python: str = "") -> Path:
    dist = name.replace("-", "_")
    files = {f"{dist}/__init__.py": f"VERSION = {version!r}\n".encode()}
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/METADATA"] = (meta + (f"Requires-Python: {requires_python}\n" if requires_python else "")).encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    digest = {n: base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode() for n, d in files.items()}
    files[f"{info}/RECORD"] = ("".join(f"{n},sha256={digest[n]},{len(d)}\n" for n, d in files.items())
                               + f"{info}/RECORD,,\n").encode()
    whl = where / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return whl


# An sdist whose build needs mysql_config, as mysqlclient 1.x's setup did (os.popen, then OSError).
BACKEND = '''import os
def _config():
    if not os.popen("mysql_config --cflags").read():
        raise OSError("mysql_config not found")
def get_requires_for_build_wheel(config_settings=None):
    _config(); return []
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _config()
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _config()
'''


def make_sdist(where: Path, name: str, version: str) -> Path:
    files = {"pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
             "backend.py": BACKEND, "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
    out = where / f"{name}-{version}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for n, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{n}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    try:
        hosts = SshHosts(tmp_path_factory.mktemp("py-hosts"), names=("py1", "py2"))
    except HarnessError as e:
        pytest.fail(f"cannot start the SSH test hosts: {e}", pytrace=False)
    base = tmp_path_factory.mktemp("wheelhouse-world")
    wheels = base / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "oldpy-shim", "1.0")
    make_wheel(wheels, "soupish", "2.10", ">=3.8")
    make_wheel(wheels, "soupish", "4.1", ">=3.11.5")      # the newest, but not for the hosts' 3.11.2
    make_wheel(wheels, "soupish", "5.0", ">=3.8")          # held back by the constraints file
    make_sdist(wheels, "fakeclient", "1.0")
    repo = AppRepo(base / "blog")
    (base / "work").mkdir()
    web = [hosts["py1"], hosts["py2"]]
    project = Project(base / "work", repo.path, web, hosts.ssh_config, template=INI)
    # no index: only the wheels made here (and no pip.conf of this machine's)
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    yield {"project": project, "repo": repo, "hosts": web, "env": env, "ssh": hosts}
    hosts.stop()


REQUIREMENTS = {
    "requirements.txt": "# as teams write it\n-r requirements/production.txt\n-c constraints.txt\n",
    "requirements/production.txt": 'oldpy-shim==1.0; python_full_version < "3.11.3"\nsoupish\n',
    "constraints.txt": "soupish<5\n",
}


def host_python(host) -> str:
    res = host.run(["python3", "-c", "import platform; print(platform.python_version())"])
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def rid_of(link: str) -> str:
    return link.rsplit("/", 1)[-1]


def test_the_wheelhouse_is_resolved_for_the_hosts_python_from_requirements_with_includes(world):
    p, repo, hosts, env = world["project"], world["repo"], world["hosts"], world["env"]
    # the premise: the hosts' interpreter is not the deployer's, and only the hosts' needs oldpy-shim
    assert [host_python(h) for h in hosts] == [HOSTS_PYTHON, HOSTS_PYTHON]
    assert platform.python_version() != HOSTS_PYTHON and sys.version_info >= (3, 11, 5), platform.python_version()
    commit = repo.commit("local requirements", REQUIREMENTS)
    p.ok("deploy:test", env=env)
    rid = rid_of(p.links()[0])
    assert rid.endswith(commit[:12]) and p.links() == [p.links()[0]] * 2
    release = json.loads((p.workdir / "build" / f"{rid}.json").read_text())
    assert release["python"] == f"cpython-{HOSTS_PYTHON}-linux-x86_64"
    for h in hosts:
        venv = h.path(f"/srv/blog/releases/{rid}/.venv").resolve()
        assert venv.name == release["wheels"]                                   # the venv is keyed by it
        assert h.path(f"/srv/blog/.deploy/wheels/{release['wheels']}/requirements.txt").read_text() == \
            "oldpy-shim==1.0\nsoupish==2.10\n"
        res = h.run([f"/srv/blog/releases/{rid}/.venv/bin/python", "-c",
                     "import platform, oldpy_shim, soupish; print(platform.python_version(), oldpy_shim.VERSION, "
                     "soupish.VERSION)"])
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == [HOSTS_PYTHON, "1.0", "2.10"]


def test_a_wheelhouse_made_for_another_python_is_not_taken_as_up_to_date(world):
    """What the tool made before (keyed py311 + the requirements: the deployer's Python) is rebuilt for the
    hosts' interpreter, with no hand clean-up of build/ or the hosts."""
    p, env = world["project"], world["env"]
    rid = rid_of(p.links()[0])
    meta = p.workdir / "build" / f"{rid}.json"
    good = json.loads(meta.read_text())
    bad = {k: v for k, v in good.items() if k != "python"} | {"wheels": "0123456789abcdef"}
    with tarfile.open(p.workdir / "build" / "wheels-0123456789abcdef.tar", "w") as tar:
        data = b"soupish==4.1\n"                  # what the deployer's own pip picked
        info = tarfile.TarInfo("requirements.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    meta.write_text(json.dumps(bad, sort_keys=True))
    res = p.ok("deploy:test", env=env)
    assert ".  archive" in res.stdout.splitlines(), res.stdout     # not up to date: rebuilt for the hosts
    assert json.loads(meta.read_text()) == good
    again = p.ok("deploy:test", env=env)
    assert "-- archive" in again.stdout.splitlines(), again.stdout


def test_an_include_that_leaves_the_archive_is_one_line_and_touches_no_host(world):
    p, repo, hosts, env = world["project"], world["repo"], world["hosts"], world["env"]
    before = [sorted(os.listdir(h.path("/srv/blog/releases"))) for h in hosts]
    repo.commit("outside", {"requirements.txt": "-r ../secrets/requirements.txt\n"})
    try:
        res = p.doit("deploy:test", env=env)
        assert res.returncode != 0
        err = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
        assert err == ["ERROR: archive: requirements.txt:1: ../secrets/requirements.txt leaves the archive; move "
                       "that file into the repository"], res.stderr
        assert [sorted(os.listdir(h.path("/srv/blog/releases"))) for h in hosts] == before
    finally:
        repo._run("git", "reset", "-q", "--hard", "HEAD~1")


def test_a_wheel_that_cannot_be_built_fails_the_archive_naming_it_and_the_missing_program(world):
    p, repo, env = world["project"], world["repo"], world["env"]
    assert shutil.which("mysql_config") is None, "this test needs a deploying machine without mysql_config"
    repo.commit("a driver to compile", {"requirements/production.txt": REQUIREMENTS["requirements/production.txt"]
                                        + "fakeclient==1.0\n"})
    try:
        res = p.doit("deploy:test", env=env)
        assert res.returncode != 0
        err = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith(
            "ERROR: archive: cannot build a wheel of fakeclient"), res.stderr
        assert "mysql_config is not installed here" in err[0] and "Traceback" not in res.stderr
    finally:
        repo._run("git", "reset", "-q", "--hard", "HEAD~1")


def test_an_app_shipping_the_tools_ready_marker_is_refused_at_archive(world):
    p, repo, hosts, env = world["project"], world["repo"], world["hosts"], world["env"]
    before = [sorted(os.listdir(h.path("/srv/blog/releases"))) for h in hosts]
    repo.commit("ships a marker", {".deploy-ready": ""})
    try:
        res = p.doit("deploy:test", env=env)
        assert res.returncode != 0
        err = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert err == ["ERROR: archive: refused: '.deploy-ready' is a name the deploy tool writes into every release "
                       "(its ready marker, release record, env files, REVISION, venv link); rename or remove it in "
                       "the repository; fix the repository"], res.stderr
        assert [sorted(os.listdir(h.path("/srv/blog/releases"))) for h in hosts] == before
    finally:
        repo._run("git", "reset", "-q", "--hard", "HEAD~1")


def test_a_release_killed_mid_unpack_is_unpacked_again_whole_never_taken_as_ready(world):
    """An archive holding .deploy-ready (made before the archive refused it) is unpacked and the deployer
    killed mid-way: the rerun must unpack it whole, not switch to the truncated tree."""
    p, repo, hosts, env = world["project"], world["repo"], world["hosts"], world["env"]
    big = os.urandom(4 << 20)
    (repo.path / "data").mkdir(exist_ok=True)
    (repo.path / "data" / "big.bin").write_bytes(big)
    commit = repo.commit("big file")
    p.ok("archive", "upload:test", env=env)
    rid = next(f.name[:-len(".tar.gz")] for f in (p.workdir / "build").glob("*.tar.gz") if commit[:12] in f.name)
    real = (p.workdir / "build" / f"{rid}.tar.gz").read_bytes()
    # what the host's tar reads: the release with the marker ahead of it all, as an older archive held it
    raw = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(real))) as src, tarfile.open(fileobj=raw, mode="w:") as dst:
        dst.addfile(tarfile.TarInfo(".deploy-ready"), io.BytesIO(b""))
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    shipped = gzip.compress(raw.getvalue(), mtime=0)
    victim = hosts[0]
    art = victim.path(f"/srv/blog/.deploy/artifacts/{rid}.tar.gz")
    art.unlink()
    os.mkfifo(art)
    os.chmod(art, 0o666)
    proc = subprocess.Popen([*DOIT, "deploy:test"], cwd=p.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "STAGES_INI": str(p.ini), **env}, start_new_session=True)
    fed = threading.Event()

    def feed():
        with open(art, "wb") as fifo:           # opens when the host's tar does
            fifo.write(shipped[:len(shipped) // 2])
            fifo.flush()
            fed.set()
            killed.wait(60)
    killed = threading.Event()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert fed.wait(120), "the host's tar never read the archive"
        os.kill(proc.pid, signal.SIGKILL)        # the deployer dies mid-unpack
        proc.wait(30)
    finally:
        killed.set()
        feeder.join(30)
        if proc.poll() is None:
            proc.kill()
    rel = victim.path(f"/srv/blog/releases/{rid}")
    assert rel.is_dir() and not (rel / "REVISION").exists()        # it did die mid-unpack
    art.unlink()
    art.write_bytes(real)
    os.chmod(art, 0o644)
    p.ok("deploy:test", env=env)
    assert p.links() == [f"../releases/{rid}"] * 2
    for h in hosts:
        live = h.path("/srv/blog/sites/test")
        assert (live / "REVISION").read_text() == commit + "\n"
        assert (live / "data" / "big.bin").read_bytes() == big


def test_the_interpreter_fact_run_here_parses_and_its_key_agrees_with_the_hosts_key_code():
    out = subprocess.run([sys.executable, *facts.interpreter_argv()[1:]],
                         capture_output=True, text=True).stdout
    env = facts.parse_interpreter(out)
    assert env is not None and env["python_full_version"] == "%d.%d.%d" % sys.version_info[:3]
    key = subprocess.run([sys.executable, "-I", "-S", "-c", facts.KEY_CODE], capture_output=True, text=True)
    assert key.stdout.strip() == facts.interpreter_key(env)


def test_a_promoted_release_goes_only_to_a_host_running_its_python(tmp_path):
    from doit_stages.config import Host
    from doit_stages.transport import LocalTransport
    t = LocalTransport(Host("local"))
    here = facts.interpreter_key(wheelhouse.read_interpreter(t))
    wheelhouse.check_interpreter(t, here, "blog-2024-01-01-0000-abcdef012345")
    with pytest.raises(StepError) as exc:
        wheelhouse.check_interpreter(t, "cpython-3.11.0-linux-x86_64", "blog-2024-01-01-0000-abcdef012345")
    assert str(exc.value).startswith(f"local: runs CPython {here.split('-')[1]} (linux x86_64), and release "
                                     "blog-2024-01-01-0000-abcdef012345's wheelhouse was built for "
                                     "cpython-3.11.0-linux-x86_64 (the hosts it was archived for)")
