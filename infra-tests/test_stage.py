"""What must hold on every host of a stage after a deploy, promote or rollback.

Every fact of a host is read by ONE command (doit_stages.steps.facts' FACTS script and its parser, as
pyinfra reads state) instead of a dozen testinfra probes: verify runs after every deploy, and this halves
its time on many hosts.
The fixtures (host, stage, release, layout, config) come from doit_stages.steps.infra_plugin."""
import json

import pytest

from doit_stages.steps.facts import facts_command, parse_facts
from doit_stages.steps.verify import database_check_command


@pytest.fixture(scope="module")
def facts(host, config, stage, layout, release):
    return parse_facts(host.check_output(facts_command(layout, config, stage, release)))


def test_link_points_at_the_release(facts, layout, release):
    assert facts["link_is_symlink"] == "1"
    assert facts["link_target"] == layout.release(release)


def test_release_is_ready_and_names_its_revision(facts, release):
    assert facts["ready"] == "1"
    revision, meta = facts["revision"].strip(), json.loads(facts["meta"])
    assert len(revision) == 40 and revision == meta["revision"]
    assert release.endswith(revision[:12])


def test_env_file_is_private(facts):
    assert facts["env_mode"] == "600" and facts["env_dir_mode"] == "700"
    owner, me = facts["env_owner"].split(" ")
    assert owner == me, f"the env file belongs to {owner}, not to {me} who deploys"


def test_env_file_is_the_live_releases_own(facts, layout, stage, release):
    """shared/<stage>.env (what an app server loads) follows the stage's link to the release's own env."""
    assert facts["env_is_symlink"] == "1"
    assert facts["env_target"] == facts["env_own"] == layout.release_env(release, stage.name)


def test_shared_dirs_are_linked(facts, config, layout):
    for name in config.project.shared_dirs:
        assert facts[f"shared:{name}"] == "1 " + layout.join("shared", name)


def test_database_reachable_with_nothing_pending(host, config, stage, layout, release):
    check = database_check_command(layout, config, stage, release)
    if check is None:
        return
    res = host.run(check)
    assert res.rc == 0, f"migrations pending or database unreachable: {res.stderr.strip()[-300:]}"
