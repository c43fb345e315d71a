"""The tool as a user installs it: a wheel of this project (not editable) in a fresh venv outside the
checkout, used from the user's own repository (the blog at its top, with its own tasks.py, as celery users
have) through a two-line dodo.py, ./stages.ini and one check of its own, test -> staging -> prod on this
machine (hosts = local, sqlite). Then a failing check of its own makes verify fail, and what it guards."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.apprepo import AppRepo
from tests.lab.stages_ini import SQLITE, stages_ini

REPO = Path(__file__).resolve().parents[2]

# the user's own repository, this machine only
STAGES_INI = stages_ini(SQLITE, {
    "project": {"source": ".", "deploy_root": ".demo/srv", "keep_releases": None, "backup_max_age": None,
                "ssh_config": None, "+": None,
                "infra_tests": "checks            ; our own testinfra checks, beside the built-in ones"},
    "database:prod": {"path": ".demo/srv/db/prod.sqlite3"},
    "database:test": {"path": ".demo/srv/db/test.sqlite3"},
    "stage:test": {"hosts": "local"},
    "stage:staging": {"hosts": "local", "link": None},
    "stage:prod": {"hosts": "local", "+": None},
})

DODO = "from doit_stages.dodo import *  # noqa: F403\n"

CHECK = '''\
def test_static_files_collected_for_the_stage(host, stage, layout, release, config):
    assert config.project.name == "blog"
    assert host.file(layout.release(release) + "/manage.py").exists
    assert host.file(layout.stage_dir(stage.name, release) + "/static/posts/site.css").exists
'''

BROKEN = '''\
def test_robots_txt_is_served(host, layout, release):
    assert host.file(layout.release(release) + "/static/robots.txt").exists
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the project's wheel installed (its dependencies from the index, through pip's cache)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"                      # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("tasks", "infra-tests"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(base / "dist"), str(src)], check=True,
                   capture_output=True, cwd=base)
    wheel = next((base / "dist").glob("doit_stages-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(wheel)], check=True, capture_output=True, cwd=base)
    return venv


def doit(venv: Path, repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("STAGES_INI", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    return subprocess.run(["doit", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_holds_the_package_and_its_checks_and_no_tasks(installed, tmp_path):
    py = str(installed / "bin" / "python")
    out = subprocess.run([py, "-c", "import doit_stages, doit_stages.steps.verify as v; "
                          "print(doit_stages.__file__); print(v.builtin_checks())"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert all(p.startswith(str(installed)) for p in out), out
    assert (Path(out[1]) / "test_stage.py").is_file()
    package = Path(out[0]).parent          # every module of tasks/, subpackages too (pyproject.toml's packages)
    shipped = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "infra_tests" not in p.parts}
    assert shipped == {p.relative_to(REPO / "tasks").as_posix() for p in (REPO / "tasks").rglob("*.py")}
    res = subprocess.run([py, "-c", "import tasks"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode != 0 and "No module named 'tasks'" in res.stderr


def test_a_user_repository_goes_test_staging_prod_then_its_failing_check_stops_a_promotion(installed, tmp_path):
    repo = AppRepo(tmp_path / "mysite")
    (repo.path / "checks").mkdir()
    repo.commit("deploy with doit-stages", {
        "dodo.py": DODO, "stages.ini": STAGES_INI, "checks/test_app.py": CHECK,
        # a project's own tasks module (celery's convention) must not shadow the tool
        "tasks.py": "def add(x, y):\n    return x + y\n",
        # nor may the project's own pytest setup (verify runs its checks with neither ini file nor plugins)
        "pytest.ini": "[pytest]\naddopts = --ds=mysite.settings --no-such-option\n",
        ".gitignore": ".demo/\nbuild/\n.doit-stages*\n"})
    (repo.path / ".demo/srv/db").mkdir(parents=True)
    (repo.path / ".demo/srv/db/prod.sqlite3").touch()
    listing = doit(installed, repo.path, "list")
    assert listing.returncode == 0, listing.stderr
    assert {"deploy:test", "promote:staging", "promote:prod", "verify:prod"} <= {
        line.split()[0] for line in listing.stdout.splitlines() if line.strip()}
    for command in ("deploy:test", "promote:staging", "promote:prod"):
        res = doit(installed, repo.path, command)
        assert res.returncode == 0, f"doit {command}:\n{res.stdout}\n{res.stderr}"
        assert "7 passed" in res.stdout, res.stdout        # 6 built-in checks + the project's own
    srv = repo.path / ".demo/srv"
    first = os.readlink(srv / "sites/current")
    assert first == os.readlink(srv / "sites/staging") == os.readlink(srv / "sites/test")
    assert (srv / "shared/prod" / first.split("/")[-1] / "static/posts/site.css").is_file()   # its STAGE_DIR
    assert json.loads((srv / ".deploy/verified-prod").read_text()) == {"release": first.split("/")[-1], "ok": True}

    # a failing check of the project's own: verify:test fails, names it, and the release cannot go on
    repo.commit("r2", {"static/version.txt": "r2\n", "checks/test_robots.py": BROKEN})
    res = doit(installed, repo.path, "deploy:test")
    assert res.returncode != 0
    assert "test_robots.py::test_robots_txt_is_served" in res.stdout + res.stderr
    second = os.readlink(srv / "sites/test")
    assert second != first
    assert json.loads((srv / ".deploy/verified-test").read_text()) == {"release": second.split("/")[-1], "ok": False}
    res = doit(installed, repo.path, "promote:staging")
    assert res.returncode != 0 and "has not passed verify:test" in res.stderr, res.stderr
    assert os.readlink(srv / "sites/staging") == first
