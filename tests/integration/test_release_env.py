"""The environment travels with the release: the stage-level build writes releases/<id>/.deploy-env/<stage>.env
(0600 in a 0700 dir, through stdin), shared/<stage>.env is a symlink through the stage's link, and
building another release never touches the env of the one live now. Real builds on the local transport
in a temp deploy_root (build = none: no venv)."""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from doit_stages.config import Config, Database, Host, Project, Stage
from doit_stages.engines import engine_for
from doit_stages.errors import StepError
from doit_stages.layout import Layout
from doit_stages.steps.archive import Release
from doit_stages.steps.build import build_release, is_built
from doit_stages.steps.cleanup import clean_releases
from doit_stages.steps.environment import app_command, env_file
from doit_stages.steps.switch import set_link, switch_link
from doit_stages.transport import LocalTransport
from tests.lab.releases import archived_release

P1, P2 = "first 'pw' $(touch x)", "second \"pw\" `id`"


class Recording(LocalTransport):
    """The local transport, keeping every argv it ran (to prove no password is on one)."""

    def __init__(self, host):
        super().__init__(host)
        self.argvs: list[list[str]] = []

    def call(self, argv, input=None, timeout=None):
        self.argvs.append(list(argv))
        return super().call(argv, input=input, timeout=timeout)


def url(db: Database) -> str:
    return engine_for(db).app_env(db)["DATABASE_URL"]


def make_config(root: Path, password: str, settings: str = "blog.settings.prod") -> Config:
    project = Project(name="blog", source=root, deploy_root=str(root), build="none")
    db = Database(name="prod", engine="mysql", dbname="blog", user="blog", password_env="PW", secret=password)
    stages = {name: Stage(name=name, hosts=(Host("local"),), link=link, settings=settings, database="prod")
              for name, link in (("staging", "sites/staging"), ("prod", "sites/current"))}
    return Config(root / "stages.ini", project, {"prod": db}, stages)


def make_release(layout: Layout, n: int) -> Release:
    rid = archived_release(layout, n)
    return Release(rid, f"{n:040x}", "0" * 64)


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    layout = Layout(str(root))
    return root, layout, Recording(Host("local")), make_release(layout, 1), make_release(layout, 2)


def published(layout: Layout, stage: str) -> bytes:
    return Path(layout.env_file(stage)).read_bytes()


def test_building_the_next_release_leaves_the_live_env_alone_and_the_switch_swaps_it(world):
    root, layout, t, a, b = world
    c1, c2 = make_config(root, P1), make_config(root, P2)
    prod = c1.stages["prod"]
    build_release(t, layout, c1, prod, a, fresh_stage_dirs=True)
    switch_link(t, layout, prod.link, a.id)
    own_a = Path(layout.release_env(a.id, "prod"))
    before = own_a.read_bytes()
    assert before == env_file(layout, c1, prod, a.id) and published(layout, "prod") == before
    assert os.readlink(layout.env_file("prod")) == "../sites/current/.deploy-env/prod.env"
    assert stat.S_IMODE(own_a.stat().st_mode) == 0o600 and stat.S_IMODE(own_a.parent.stat().st_mode) == 0o700

    build_release(t, layout, c2, c2.stages["prod"], b, fresh_stage_dirs=True)       # the password changed meanwhile
    assert own_a.read_bytes() == before and published(layout, "prod") == before
    own_b = Path(layout.release_env(b.id, "prod")).read_bytes()
    assert own_b == env_file(layout, c2, c2.stages["prod"], b.id) != before
    switch_link(t, layout, prod.link, b.id)
    assert published(layout, "prod") == env_file(layout, c2, c2.stages["prod"], b.id)
    # an app command of a release reads that release's env, whichever is live and whatever stages.ini says:
    # the reload of a put-back gets the old one
    show = ["sh", "-c", 'printf %s "$DATABASE_URL"']
    for rel, config in ((a, c1), (b, c2)):
        code, out, _ = t.call(app_command(layout, "prod", rel.id, show))
        assert code == 0 and out == url(config.databases["prod"])
    set_link(t, layout, prod.link, layout.link_target(prod.link, a.id))    # a put-back
    assert published(layout, "prod") == before
    assert not any(pw in arg for argv in t.argvs for arg in argv for pw in (P1, P2))


def test_one_release_live_on_two_stages_has_an_env_for_each(world):
    root, layout, t, a, _ = world
    config = make_config(root, P1)
    for name in ("staging", "prod"):
        stage = replace(config.stages[name], settings=f"blog.settings.{name}")
        cfg = replace(config, stages={**config.stages, name: stage})
        build_release(t, layout, cfg, stage, a, fresh_stage_dirs=False)
        switch_link(t, layout, stage.link, a.id)
    assert b"STAGE=staging\n" in published(layout, "staging") and b"STAGE=prod\n" in published(layout, "prod")
    assert b"blog.settings.staging" in published(layout, "staging")
    assert b"blog.settings.prod" in published(layout, "prod")
    names = sorted(os.listdir(Path(layout.release(a.id), ".deploy-env")))
    assert [n for n in names if n.count(".") == 1] == ["prod.built", "prod.env", "staging.built", "staging.env"]
    assert len(names) == 6      # and one version of each: <stage>.env is a hard link to it
    for name in ("prod", "staging"):
        own = Path(layout.release(a.id), ".deploy-env", f"{name}.env")
        assert [n for n in names if os.path.samefile(Path(own.parent, n), own)] == sorted(
            [f"{name}.env", next(n for n in names if n.startswith(f"{name}.") and n.count(".") == 2)])


def test_is_built_asks_for_the_env_of_stages_ini_unless_a_rollback_keeps_the_releases_own(world):
    root, layout, t, a, _ = world
    c1, c2 = make_config(root, P1), make_config(root, P2)
    build_release(t, layout, c1, c1.stages["prod"], a, fresh_stage_dirs=False)
    assert is_built(t, layout, c1, c1.stages["prod"], a)
    assert not is_built(t, layout, c2, c2.stages["prod"], a)                         # the password changed
    assert is_built(t, layout, c2, c2.stages["prod"], a, keep_env=True)
    before = Path(layout.release_env(a.id, "prod")).read_bytes()
    build_release(t, layout, c2, c2.stages["prod"], a, fresh_stage_dirs=True, keep_env=True)
    assert Path(layout.release_env(a.id, "prod")).read_bytes() == before
    os.chmod(layout.release_env(a.id, "prod"), 0o644)                        # a private env file or nothing
    assert not is_built(t, layout, c1, c1.stages["prod"], a, keep_env=True)
    os.chmod(layout.release_env(a.id, "prod"), 0o600)
    os.unlink(layout.env_file("prod"))                                       # the published symlink
    assert not is_built(t, layout, c1, c1.stages["prod"], a)
    build_release(t, layout, c1, c1.stages["prod"], a, fresh_stage_dirs=False)
    assert is_built(t, layout, c1, c1.stages["prod"], a)
    # a rollback to a release without an env file for the stage writes one from stages.ini
    os.unlink(layout.release_env(a.id, "prod"))
    build_release(t, layout, c2, c2.stages["prod"], a, fresh_stage_dirs=False, keep_env=True)
    assert Path(layout.release_env(a.id, "prod")).read_bytes() == env_file(layout, c2, c2.stages["prod"], a.id)


def test_a_plain_env_file_of_an_older_layout_moves_into_the_live_release(world):
    root, layout, t, a, b = world
    c1, c2 = make_config(root, P1), make_config(root, P2)
    prod = c1.stages["prod"]
    build_release(t, layout, c1, prod, a, fresh_stage_dirs=False)
    switch_link(t, layout, prod.link, a.id)
    # what a host deployed by an earlier version looks like: no env in the release, a plain shared file
    shutil.rmtree(Path(layout.release_env(a.id, "prod")).parent)
    Path(layout.env_file("prod")).unlink()
    Path(layout.env_file("prod")).write_bytes(b"OLD='env'\n")
    os.chmod(layout.env_file("prod"), 0o600)
    show = ["sh", "-c", 'printf %s "$OLD"']
    # until the stage is built again, app commands of the live release (verify, a reload) read that file
    assert t.call(app_command(layout, "prod", a.id, show, live=True))[:2] == (0, "env")
    assert t.call(app_command(layout, "prod", a.id, show))[:2] == (0, "env")
    build_release(t, layout, c2, c2.stages["prod"], b, fresh_stage_dirs=False)
    assert Path(layout.env_file("prod")).is_symlink() and published(layout, "prod") == b"OLD='env'\n"
    assert Path(layout.release_env(a.id, "prod")).read_bytes() == b"OLD='env'\n"
    assert stat.S_IMODE(os.stat(layout.release_env(a.id, "prod")).st_mode) == 0o600
    assert t.call(app_command(layout, "prod", a.id, show, live=True))[:2] == (0, "env")
    assert t.call(app_command(layout, "prod", b.id, show))[:2] == (0, "")    # B has its own
    # and never the live release's env for a release that has none of its own
    shutil.rmtree(Path(layout.release_env(b.id, "prod")).parent)
    code, _, err = t.call(app_command(layout, "prod", b.id, show))
    assert code != 0 and layout.release_env(b.id, "prod") in err


def test_a_removed_release_takes_its_env_files_along(world):
    root, layout, t, a, b = world
    config = make_config(root, P1)
    prod = config.stages["prod"]
    for rel in (a, b):
        build_release(t, layout, config, prod, rel, fresh_stage_dirs=False)
    switch_link(t, layout, prod.link, b.id)
    assert clean_releases(t, layout, [prod.link], keep=1, venvs=False) == [a.id]
    assert not Path(layout.release(a.id)).exists() and published(layout, "prod") == env_file(layout, config, prod, b.id)


def test_a_build_of_the_live_release_adds_a_version_and_never_rewrites_the_live_env(world):
    """The stage's environment changed while the release is live there: a new version, recorded for the
    switch; the env file it runs with stays byte for byte (same inode). Other build settings: refused."""
    root, layout, t, a, _ = world
    c1, c2 = make_config(root, P1), make_config(root, P2)
    prod = c1.stages["prod"]
    build_release(t, layout, c1, prod, a, fresh_stage_dirs=True)
    switch_link(t, layout, prod.link, a.id)
    live = Path(layout.release_env(a.id, "prod"))
    before, ino = live.read_bytes(), live.stat().st_ino
    assert not is_built(t, layout, c2, c2.stages["prod"], a)
    build_release(t, layout, c2, c2.stages["prod"], a, fresh_stage_dirs=True, tokens=("0123456789ab", "ba9876543210"))
    assert live.read_bytes() == before and live.stat().st_ino == ino and published(layout, "prod") == before
    assert Path(layout.env_version(a.id, "prod", "0123456789ab")).read_bytes() == env_file(layout, c2, prod, a.id)
    assert Path(layout.env_record(a.id, "prod")).read_text().split()[0] == "0123456789ab"
    assert is_built(t, layout, c2, c2.stages["prod"], a)
    # the app commands before the switch (a migration) see the new env; the live ones (reload) the old
    show = ["sh", "-c", 'printf %s "$DATABASE_URL"']
    assert t.call(app_command(layout, "prod", a.id, show))[1] == url(c2.databases["prod"])
    assert t.call(app_command(layout, "prod", a.id, show, live=True))[1] == url(c1.databases["prod"])
    # built again with the first env: the version the release runs with is reused, nothing new written
    build_release(t, layout, c1, prod, a, fresh_stage_dirs=True)
    assert os.path.samefile(layout.env_version(a.id, "prod", Path(layout.env_record(a.id, "prod")).read_text()
                                               .split()[0]), live)
    # another build_command while it is live: refused, nothing written
    c3 = replace(c1, project=replace(c1.project, build_command="sh -c 'echo changed > marker'"))
    listing = sorted(os.listdir(live.parent))
    with pytest.raises(StepError, match="live on prod"):
        build_release(t, layout, c3, c3.stages["prod"], a, fresh_stage_dirs=True)
    assert sorted(os.listdir(live.parent)) == listing and not Path(layout.release(a.id), "marker").exists()
    assert not is_built(t, layout, c3, c3.stages["prod"], a)


def stage_dir_of(env: bytes) -> str:
    return next(line[len(b"STAGE_DIR="):].decode() for line in env.splitlines() if line.startswith(b"STAGE_DIR="))


def files(top: Path) -> dict:
    """Every file and dir under top with its bytes (None for a dir)."""
    return {str(p.relative_to(top)): None if p.is_dir() else p.read_bytes() for p in sorted(top.rglob("*"))}


def test_each_release_builds_its_own_stage_dirs_and_the_live_ones_stay_until_the_switch(world):
    """stage_dirs: the release's own generation (shared/<stage>/<id>), built afresh while another release is
    live; the live one's byte for byte untouched; the switch moves STAGE_DIR with the env; a rollback
    (keep_env, not afresh) finds its files again; cleanup takes a release's generation with it."""
    root, layout, t, a, b = world
    config = make_config(root, P1)
    config = replace(config, project=replace(config.project, stage_dirs=("cache", "tmp/x")))
    prod = config.stages["prod"]
    build_release(t, layout, config, prod, a, fresh_stage_dirs=True)
    switch_link(t, layout, prod.link, a.id)
    gen_a = Path(layout.stage_dir("prod", a.id))
    assert stage_dir_of(published(layout, "prod")) == str(gen_a) and (gen_a / "tmp" / "x").is_dir()
    (gen_a / "cache" / "site.css").write_bytes(b"a's collected css")
    before = files(gen_a)
    gen_b = Path(layout.stage_dir("prod", b.id))
    (gen_b / "cache").mkdir(parents=True)
    (gen_b / "cache" / "stale").write_text("a killed build's")
    build_release(t, layout, config, prod, b, fresh_stage_dirs=True)
    assert files(gen_a) == before and stage_dir_of(published(layout, "prod")) == str(gen_a)
    assert files(gen_b) == {"cache": None, "tmp": None, "tmp/x": None}              # afresh
    assert stage_dir_of(Path(layout.release_env(b.id, "prod")).read_bytes()) == str(gen_b)
    switch_link(t, layout, prod.link, b.id)
    assert stage_dir_of(published(layout, "prod")) == str(gen_b)
    # rollback: A's env, so its generation, with its files; the build rolled back to never empties it
    build_release(t, layout, config, prod, a, fresh_stage_dirs=False, keep_env=True)
    assert files(gen_a) == before
    switch_link(t, layout, prod.link, a.id)
    assert stage_dir_of(published(layout, "prod")) == str(gen_a)
    # a release that goes takes its generation along (and a killed copy's <id>.tmp); a kept one's stays,
    # and so does what is not a generation
    Path(f"{gen_b}.tmp").mkdir()
    Path(layout.stage_dirs("prod"), "cache").mkdir()
    assert clean_releases(t, layout, [prod.link], keep=1, venvs=False, stages=("prod", "staging")) == [b.id]
    assert not gen_b.exists() and not Path(f"{gen_b}.tmp").exists() and files(gen_a) == before
    assert Path(layout.stage_dirs("prod"), "cache").is_dir()


def test_the_live_release_of_a_host_from_before_generations_keeps_its_stage_files(world):
    """A host deployed before generations: the live release's env has STAGE_DIR=shared/<stage>. Built again
    (a new env version), it gets a generation copied from there, so its switch serves the same files;
    shared/<stage>/ itself is left as it was."""
    root, layout, t, a, _ = world
    config = make_config(root, P1)
    config = replace(config, project=replace(config.project, stage_dirs=("cache",)))
    prod = config.stages["prod"]
    build_release(t, layout, config, prod, a, fresh_stage_dirs=True)
    switch_link(t, layout, prod.link, a.id)
    gen_a, top = Path(layout.stage_dir("prod", a.id)), Path(layout.stage_dirs("prod"))
    shutil.rmtree(gen_a)
    for rel, data in (("cache/site.css", b"css"), ("static/app.js", b"js")):
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(data)
    legacy = files(top)
    c2 = replace(config, databases={"prod": replace(config.databases["prod"], secret=P2)})
    build_release(t, layout, c2, c2.stages["prod"], a, fresh_stage_dirs=True)      # live: no build_command
    assert files(gen_a) == {"cache": None, "cache/site.css": b"css", "static": None, "static/app.js": b"js"}
    assert {k: v for k, v in files(top).items() if not k.startswith(a.id)} == legacy
