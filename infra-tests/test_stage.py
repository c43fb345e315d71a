"""What must hold on every host of a stage after a deploy, promote or rollback.

Every fact of a host is read by ONE command (a fact script plus a parser, as pyinfra reads state) instead
of a dozen testinfra probes: verify runs after every deploy, and this halves its time on many hosts.
The fixtures (host, stage, release, layout, config) come from doit_stages.infra_plugin."""
import json
import shlex

import pytest

from doit_stages.layout import READY
from doit_stages.steps.environment import app_command
from doit_stages.steps.migrate import check_argv

# $1 link, $2 release dir, $3 env file, $4 READY marker name, then the shared dirs: one "key=value" a line
FACTS = r'''link=$1; rel=$2; env=$3; ready=$4; shift 4
echo "link_is_symlink=$([ -L "$link" ] && echo 1 || echo 0)"
echo "link_target=$(realpath -- "$link" 2>/dev/null)"
echo "ready=$([ -e "$rel/$ready" ] && echo 1 || echo 0)"
echo "revision=$(cat -- "$rel/REVISION" 2>/dev/null)"
echo "meta=$(tr -d '\n' < "$rel/.deploy-release.json" 2>/dev/null)"
echo "env_mode=$([ -e "$env" ] && stat -Lc %a -- "$env")"
for name in "$@"; do
  echo "shared:$name=$([ -L "$rel/$name" ] && echo 1 || echo 0) $(realpath -- "$rel/$name" 2>/dev/null)"
done
'''


@pytest.fixture(scope="module")
def facts(host, config, stage, layout, release):
    args = [layout.link(stage.link), layout.release(release), layout.env_file(stage.name), READY,
            *config.project.shared_dirs]
    out = host.check_output("sh -c %s sh" + " %s" * len(args), FACTS, *args)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_link_points_at_the_release(facts, layout, release):
    assert facts["link_is_symlink"] == "1"
    assert facts["link_target"] == layout.release(release)


def test_release_is_ready_and_names_its_revision(facts, release):
    assert facts["ready"] == "1"
    revision, meta = facts["revision"].strip(), json.loads(facts["meta"])
    assert len(revision) == 40 and revision == meta["revision"]
    assert release.endswith(revision[:12])


def test_env_file_is_private(facts):
    assert facts["env_mode"] == "600"


def test_shared_dirs_are_linked(facts, config, layout):
    for name in config.project.shared_dirs:
        assert facts[f"shared:{name}"] == "1 " + layout.join("shared", name)


def test_database_reachable_with_nothing_pending(host, config, stage, layout, release):
    if not stage.database:
        return
    check = check_argv(config.project.migrate_command)
    if check is None:
        return
    res = host.run(shlex.join(app_command(layout, stage.name, release, check)))
    assert res.rc == 0, f"migrations pending or database unreachable: {res.stderr.strip()[-300:]}"
