"""What must hold on every host of a stage after a deploy, promote or rollback."""
import json
import shlex

from tasks.layout import READY
from tasks.steps.environment import app_command
from tasks.steps.migrate import check_argv


def test_link_points_at_the_release(host, stage, layout, release):
    link = host.file(layout.link(stage.link))
    assert link.is_symlink
    assert link.linked_to == layout.release(release)


def test_release_is_ready_and_names_its_revision(host, layout, release):
    assert host.file(f"{layout.release(release)}/{READY}").exists
    revision = host.file(f"{layout.release(release)}/REVISION").content_string.strip()
    meta = json.loads(host.file(f"{layout.release(release)}/.deploy-release.json").content_string)
    assert len(revision) == 40 and revision == meta["revision"]
    assert release.endswith(revision[:12])


def test_env_file_is_private(host, stage, layout):
    env = host.file(layout.env_file(stage.name))
    assert env.exists and env.mode == 0o600


def test_shared_dirs_are_linked(host, config, layout, release):
    for name in config.project.shared_dirs:
        f = host.file(f"{layout.release(release)}/{name}")
        assert f.is_symlink and f.linked_to == layout.join("shared", name)


def test_database_reachable_with_nothing_pending(host, config, stage, layout, release):
    if not stage.database:
        return
    check = check_argv(config.project.migrate_command)
    if check is None:
        return
    res = host.run(shlex.join(app_command(layout, stage.name, release, check)))
    assert res.rc == 0, f"migrations pending or database unreachable: {res.stderr.strip()[-300:]}"
