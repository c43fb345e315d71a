"""build = pip: one venv per wheelhouse digest per host, shared by the releases with that digest, built in
place at its final path, never changed once complete; cleanup removes the venvs no release left links.
Real `python3 -m venv` and `pip install --no-index` on the local transport in a temp deploy_root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from doit_stages.config import Config, Host, Project, Stage
from doit_stages.layout import Layout
from doit_stages.steps.archive import Release
from doit_stages.steps.build import build_release
from doit_stages.steps.cleanup import REMOVE
from doit_stages.transport import LocalTransport
from tests.lab.releases import archived_release


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "srv"
    project = Project(name="blog", source=tmp_path, deploy_root=str(root), build="pip")
    stage = Stage(name="test", hosts=(Host("local"),), link="sites/test")
    config = Config(tmp_path / "stages.ini", project, {}, {"test": stage})
    return config, stage, Layout(str(root)), LocalTransport(Host("local"))


def release(layout: Layout, n: int, digest: str) -> Release:
    """A release whose archive is on the 'host', and a wheelhouse of that digest (a requirements file that
    asks for nothing, so pip needs no index)."""
    rid = archived_release(layout, n)
    wheels = Path(layout.wheels(digest))
    wheels.mkdir(parents=True, exist_ok=True)
    (wheels / "requirements.txt").write_text(f"# requirements {digest}\n")
    return Release(rid, f"{n:040x}", "0" * 64, digest)


def venv_of(layout: Layout, rid: str) -> Path:
    return Path(layout.release(rid), ".venv").resolve()


def test_one_venv_per_wheelhouse_digest_reused_rebuilt_when_half_built_and_cleaned_up(world):
    """(Each venv build costs seconds, so one test walks through the whole life of the venvs.)"""
    config, stage, layout, t = world
    a, b, c, d = (release(layout, 1, "d1"), release(layout, 2, "d1"), release(layout, 3, "d2"),
                  release(layout, 4, "d1"))
    build_release(t, layout, config, stage, a, fresh_stage_dirs=False)
    venv = Path(layout.venv("d1"))
    assert venv_of(layout, a.id) == venv
    assert os.readlink(Path(layout.release(a.id), ".venv")) == "../../.deploy/venvs/d1"   # relative link
    # built at its final path: its scripts name that python
    assert (venv / "bin" / "pip").read_text().splitlines()[0] == f"#!{venv}/bin/python3"
    stamp = (venv / ".deploy-complete").stat().st_mtime_ns
    python = (venv / "bin" / "python3").lstat().st_ino
    # a code-only change: the same venv, not rebuilt
    build_release(t, layout, config, stage, b, fresh_stage_dirs=False)
    assert venv_of(layout, b.id) == venv
    assert (venv / ".deploy-complete").stat().st_mtime_ns == stamp
    assert (venv / "bin" / "python3").lstat().st_ino == python
    # a changed requirement: a new venv; the one the live releases use is untouched
    build_release(t, layout, config, stage, c, fresh_stage_dirs=False)
    assert venv_of(layout, c.id) == Path(layout.venv("d2")) != venv
    assert (venv / ".deploy-complete").stat().st_mtime_ns == stamp
    out = t.run([str(venv_of(layout, c.id) / "bin" / "python"), "-c", "import sys; print(sys.prefix)"])
    assert out.strip() == layout.venv("d2")
    # a venv without its completion marker (its build died) is built again from scratch
    (venv / ".deploy-complete").unlink()
    (venv / "half-built").write_text("x")
    build_release(t, layout, config, stage, d, fresh_stage_dirs=False)
    assert (venv / ".deploy-complete").is_file() and not (venv / "half-built").exists()
    assert t.run([str(venv_of(layout, d.id) / "bin" / "python"), "-c", "print('ok')"]).strip() == "ok"
    # cleanup: a venv goes when no release left links it, never before
    Path(layout.venv("orphan")).mkdir()               # e.g. left by a build that died before linking it
    venvs = os.path.dirname(layout.venv("x"))
    t.run(["sh", "-c", REMOVE, "sh", layout.releases, venvs, "1", layout.release(c.id)])
    assert sorted(os.listdir(venvs)) == ["d1"]        # d2 went with c; d1 stays for a, b, d
    t.run(["sh", "-c", REMOVE, "sh", layout.releases, venvs, "2", layout.release(a.id), layout.release(b.id)])
    assert sorted(os.listdir(venvs)) == ["d1"]        # d still links it
    t.run(["sh", "-c", REMOVE, "sh", layout.releases, venvs, "1", layout.release(d.id)])
    assert os.listdir(venvs) == [] and os.listdir(layout.releases) == []


def test_a_venv_is_made_only_by_the_python3_its_wheelhouse_was_resolved_for(world):
    import subprocess

    from doit_stages.errors import StepError
    from doit_stages.steps.facts import KEY_CODE
    config, stage, layout, t = world
    here = subprocess.run(["python3", "-I", "-S", "-c", KEY_CODE], capture_output=True, text=True).stdout.strip()
    other = release(layout, 5, "d5")
    other = Release(other.id, other.revision, other.sha256, "d5", "cpython-3.11.0-linux-x86_64")
    with pytest.raises(StepError) as exc:
        build_release(t, layout, config, stage, other, fresh_stage_dirs=False)
    assert str(exc.value) == (f"local: python3 there is {here}, and release {other.id}'s wheelhouse was built for "
                              "cpython-3.11.0-linux-x86_64: give this host that python3, or deploy a new release")
    assert not Path(layout.venv("d5")).exists() and not Path(layout.release(other.id)).exists()
    mine = Release(other.id, other.revision, other.sha256, "d5", here)
    build_release(t, layout, config, stage, mine, fresh_stage_dirs=False)
    assert (Path(layout.venv("d5")) / ".deploy-complete").is_file()
