"""Facts: each state script of a step run for real by the local transport on a temp deploy_root, its output
parsed: the command and its parser agree on the state they describe (the parsers alone, on canned output:
tests/unit/test_facts.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from doit_stages.config import Config, Host, Project, Stage
from doit_stages.layout import Layout
from doit_stages.runtime import leftovers
from doit_stages.runtime.known_links import KnownLinks
from doit_stages.steps import build, cleanup, switch, upload
from doit_stages.steps.archive import Release
from doit_stages.steps.database.backup import LIST, parse_backup_list
from doit_stages.steps.facts import facts_argv, parse_facts
from doit_stages.transport import LocalTransport

RID, OLD = "blog-2026-01-02-0304-aaaaaaaaaaaa", "blog-2026-01-01-0304-bbbbbbbbbbbb"


class FakeSession:
    """What read_state needs of a run: a layout, the config and its known links (none: no lock held; no
    connection: the transport is local)."""

    def __init__(self, layout, config):
        self.layout, self.config, self.known_links = layout, config, KnownLinks()


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "srv"
    layout = Layout(str(root))
    project = Project(name="blog", source=tmp_path, deploy_root=str(root), shared_dirs=("media",))
    stage = Stage(name="test", hosts=(Host("local"),), link="sites/test")
    config = Config(tmp_path / "stages.ini", project, {}, {"test": stage})
    for rid in (RID, OLD):
        rel = Path(layout.release(rid))
        rel.mkdir(parents=True)
        (rel / "REVISION").write_text("a" * 40 + "\n")
    Path(layout.ready(RID)).write_text("")
    Path(layout.release_meta(RID)).write_text('{"id": "%s"}\n' % RID)
    Path(layout.shared, "media").mkdir(parents=True)
    os.symlink("../../shared/media", Path(layout.release(RID), "media"))
    Path(layout.link("sites/test")).parent.mkdir(parents=True)
    os.symlink(f"../releases/{RID}", layout.link("sites/test"))
    return LocalTransport(Host("local")), layout, config, stage


def test_switch_state_of_a_live_release_and_an_intent(host):
    t, layout, config, stage = host
    Path(layout.built_marker("test")).parent.mkdir(parents=True, exist_ok=True)
    Path(layout.built_marker("test")).write_text(RID + "\n")
    facts = switch.read_state(t, FakeSession(layout, config), stage, RID)
    assert facts == {"link": f"../releases/{RID}", "ready": True, "built": RID, "missing": [], "intent": None,
                     "env": "", "env_live": "", "unsafe": None, "notlink": False}
    env = Path(layout.release_env(RID, "test")).parent
    env.mkdir()
    (env / "test.0123456789ab.env").write_text("A=1\n")
    (env / "test.fedcba987654.env").write_text("A=2\n")
    (env / "test.built").write_text("0123456789ab 5f2c\n")
    os.link(env / "test.fedcba987654.env", env / "test.env")
    facts = switch.read_state(t, FakeSession(layout, config), stage, RID)
    assert (facts["env"], facts["env_live"]) == ("0123456789ab", "fedcba987654")
    (env / "test.env").unlink()
    (env / "test.env").write_text("A=3\n")                               # an env file no version names
    assert switch.read_state(t, FakeSession(layout, config), stage, RID)["env_live"] == "?"
    os.rename(layout.join("sites"), layout.join("sites.real"))              # a planted symlink on the way
    os.symlink(layout.join("sites.real"), layout.join("sites"))
    facts = switch.read_state(t, FakeSession(layout, config), stage, RID)
    assert facts["unsafe"] == ["sites", layout.join("sites.real")]
    os.unlink(layout.join("sites"))
    os.rename(layout.join("sites.real"), layout.join("sites"))
    Path(layout.intent("test")).write_text(json.dumps({"release": OLD, "previous": f"../releases/{RID}"}))
    facts = switch.read_state(t, FakeSession(layout, config), stage, OLD)
    assert facts["ready"] is False and facts["missing"] == ["media"] and facts["intent"]["release"] == OLD


def test_stage_state_says_built_only_for_the_stage_and_a_private_env(host):
    t, layout, config, stage = host
    release = Release(RID, "a" * 40, "0" * 64)
    assert not build.is_built(t, layout, config, stage, release)          # no marker, no env file
    from doit_stages.steps.environment import env_file
    own = Path(layout.env_version(RID, "test", "0123456789ab"))
    own.parent.mkdir()
    own.write_bytes(env_file(layout, config, stage, RID))
    os.chmod(own, 0o600)
    os.link(own, layout.release_env(RID, "test"))
    Path(layout.built_marker("test")).parent.mkdir(parents=True, exist_ok=True)
    Path(layout.built_marker("test")).write_text(RID + "\n")
    Path(layout.env_record(RID, "test")).write_text(f"0123456789ab {build.build_inputs(config, stage)}\n")
    assert not build.is_built(t, layout, config, stage, release)          # shared/test.env not published
    os.symlink(layout.env_file_target("sites/test", "test"), layout.env_file("test"))
    assert build.is_built(t, layout, config, stage, release)
    os.chmod(own, 0o644)
    assert not build.is_built(t, layout, config, stage, release)          # world-readable: not built
    os.chmod(own, 0o600)
    own.write_text("STAGE=other\n")
    assert not build.is_built(t, layout, config, stage, release)          # another env: not built
    assert build.is_built(t, layout, config, stage, release, keep_env=True)   # unless a rollback keeps it
    Path(layout.env_record(RID, "test")).write_text("0123456789ab 0000\n")
    assert not build.is_built(t, layout, config, stage, release, keep_env=True)  # other build settings
    Path(layout.env_record(RID, "test")).write_text(f"0123456789ab {build.build_inputs(config, stage)}\n")
    os.unlink(layout.release_env(RID, "test"))
    Path(layout.release_env(RID, "test")).write_text("STAGE=other\n")
    assert not build.is_built(t, layout, config, stage, release, keep_env=True)  # it runs with another one


def test_scan_reads_links_releases_and_log(host):
    t, layout, config, stage = host
    Path(layout.log).parent.mkdir(parents=True, exist_ok=True)
    Path(layout.log).write_text(json.dumps({"stage": "test", "release": OLD, "result": "ok"}) + "\n{torn")
    out = t.run(["sh", "-c", cleanup.SCAN, "sh", layout.root, layout.log, "sites/test", "sites/none"])
    linked, names, log = cleanup.parse_scan(out)
    assert linked == {RID} and sorted(names) == sorted([RID, OLD])
    assert log == [{"stage": "test", "release": OLD, "result": "ok"}]


def test_leftover_listing_on_a_host(host):
    t, layout, config, stage = host
    Path(layout.lock).mkdir(parents=True)
    Path(layout.lock, "owner.json").write_text('{"machine": "m", "pid": 1}')
    cnf = Path(layout.deploy, "cnf.m.999999.AbCdEf")
    cnf.mkdir()
    holder, paths = leftovers.parse_listing(t.run(["sh", "-c", leftovers.LIST, "sh", layout.deploy, layout.backups]))
    assert holder == {"machine": "m", "pid": 1} and paths == [str(cnf)]


def test_backup_list_on_a_host(host):
    t, layout, config, stage = host
    Path(layout.backups).mkdir()
    for name, db, epoch in (("b2", "prod", 2), ("b1", "prod", 1), ("t1", "test", 3)):
        Path(layout.backups, name + ".json").write_text(json.dumps(
            {"name": name, "file": name + ".sql.gz", "database": db, "status": "verified", "epoch": epoch}))
    # metadata that names a file outside db_backup/: never listed, so retention never deletes it
    for name, file in (("evil", "../.deploy/releases.jsonl"), ("abs", "/srv/blog/.deploy/releases.jsonl")):
        Path(layout.backups, name + ".json").write_text(json.dumps(
            {"name": name, "file": file, "database": "prod", "status": "verified", "epoch": 0}))
    Path(layout.backups, "other.json").write_text(json.dumps(
        {"name": "b1", "file": "b1.sql.gz", "database": "prod", "status": "verified", "epoch": 0}))
    metas, ignored = parse_backup_list(t.run(["sh", "-c", LIST, "sh", layout.backups]), "prod")
    assert [m["name"] for m in metas] == ["b1", "b2"]
    assert sorted(ignored) == [
        """abs.json: ignored: its "file" '/srv/blog/.deploy/releases.jsonl' is not abs.sql.gz or abs.sqlite3.gz """
        "beside it",
        """evil.json: ignored: its "file" '../.deploy/releases.jsonl' is not evil.sql.gz or evil.sqlite3.gz """
        "beside it",
        """other.json: ignored: its "name" 'b1' is not its own file name"""]


def test_retention_deletes_only_files_of_db_backup(host):
    """prune_backups on a real (local) host: with keep 1, the older backup goes; metadata that names a path is
    refused at the one place a path is made, even when a caller hands it over."""
    from doit_stages.errors import StepError
    from doit_stages.steps.database.retention import prune_backups
    t, layout, config, stage = host
    Path(layout.backups).mkdir()
    log = Path(layout.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text('{"stage": "test"}\n')
    metas = []
    for name, epoch in (("b1", 1), ("b2", 2)):
        meta = {"name": name, "file": name + ".sql.gz", "database": "prod", "status": "verified", "epoch": epoch}
        Path(layout.backups, name + ".json").write_text(json.dumps(meta))
        Path(layout.backups, name + ".sql.gz").write_bytes(b"x")
        metas.append(meta)
    prune_backups(t, layout, metas, keep=1)
    assert sorted(p.name for p in Path(layout.backups).iterdir()) == ["b2.json", "b2.sql.gz"]
    evil = {"name": "b0", "file": "../.deploy/releases.jsonl", "database": "prod", "status": "verified", "epoch": 0}
    with pytest.raises(StepError, match="not a file of"):
        prune_backups(t, layout, [evil, metas[1]], keep=1)
    assert log.read_text() == '{"stage": "test"}\n'


def test_has_release_needs_the_exact_proof(host):
    t, layout, config, stage = host
    release = Release(RID, "a" * 40, "0" * 64)
    assert not upload.has_release(t, layout, release)
    Path(layout.artifact_proof(RID)).parent.mkdir(parents=True, exist_ok=True)
    Path(layout.artifact_proof(RID)).write_text(release.to_json())
    assert upload.has_release(t, layout, release)
    Path(layout.artifact_proof(RID)).write_text(release.to_json().replace(RID, OLD))
    assert not upload.has_release(t, layout, release)


def test_verify_facts_on_a_host(host):
    t, layout, config, stage = host
    facts = parse_facts(t.run(facts_argv(layout, config, stage, RID)))
    assert facts["link_is_symlink"] == "1" and facts["link_target"] == layout.release(RID)
    assert facts["ready"] == "1" and facts["revision"] == "a" * 40
    assert json.loads(facts["meta"]) == {"id": RID} and facts["env_mode"] == ""
    assert (facts["env_is_symlink"], facts["env_target"], facts["env_own"]) == ("0", "", "")
    own = Path(layout.release_env(RID, "test"))
    own.parent.mkdir(mode=0o700)
    own.write_text("STAGE=test\n")
    os.chmod(own, 0o600)
    os.symlink(layout.env_file_target("sites/test", "test"), layout.env_file("test"))
    facts = parse_facts(t.run(facts_argv(layout, config, stage, RID)))
    assert facts["env_mode"] == "600" and facts["env_dir_mode"] == "700" and facts["env_is_symlink"] == "1"
    assert facts["env_target"] == facts["env_own"] == os.path.realpath(own)
    owner, me = facts["env_owner"].split(" ")
    assert owner == me
    assert facts["shared:media"] == "1 " + layout.join("shared", "media")
