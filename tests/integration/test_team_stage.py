"""A team's stages end to end on three real sshd hosts: every stage with a web role (`hosts`: web1, web2) and
a worker role (`hosts.worker`: web3), a `local:` notification hook, a `before_switch` check on the hosts, and
secrets from env:, file: and command: sources; two releases go test -> staging -> prod, then prod rolls
back. Afterwards no secret is on any argv the runs started (here or on the hosts), in their output, in
doit's dep file, or in any file on the hosts but the releases' 0600 env files. Real MariaDB."""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from tests.integration.test_app_secrets import (
    APP_ENV,
    ENV_VAR,
    files_holding,
    recorded_doit,
    write_secret,
)
from tests.lab.argv_recorder import recorded_argvs
from tests.lab.world import open_world

ROOT = "/srv/blog"
STAGES = (("test", "sites/test"), ("staging", "sites/staging"), ("prod", "sites/current"))
# on every stage: each role's reload writes its role per stage; the check on the hosts logs the stage it
# passed; the notification logs each command's outcome here
ROLE_LINES = """\
reload_command = sh -c 'echo app > {root}/role-$STAGE'
reload_command.worker = sh -c 'echo worker > {root}/role-$STAGE'
before_switch = sh -c 'test -e manage.py && echo "$STAGE" >> {root}/checked.log'
""".format(root=ROOT)
NOTIFY = """on_success = local: sh -c 'echo "$DEPLOY_COMMAND $DEPLOY_RESULT $DEPLOY_RELEASE" >> notify.log'\n"""


@pytest.fixture(scope="module")
def world(ssh_hosts, mariadb, tmp_path_factory):
    web1, web2, web3 = ssh_hosts["web1"], ssh_hosts["web2"], ssh_hosts.add("web3")
    roles = {"hosts": f"{web1.url}, {web2.url}", "+": f"hosts.worker = {web3.url}\n{ROLE_LINES}"}
    change = {f"stage:{name}": roles for name, _ in STAGES}
    with open_world(mariadb, ssh_hosts, tmp_path_factory.mktemp("team"), names=("web1", "web2", "web3"),
                    changes=[change]) as w:
        p = w["project"]
        values = {k: f"{k.lower()}-{secrets.token_hex(8)}" for k in ("SECRET_KEY", "FILE_TOKEN", "COMMAND_TOKEN")}
        write_secret(p.workdir / "secrets" / "file-token", values["FILE_TOKEN"])
        write_secret(p.workdir / "secrets" / "the token", values["COMMAND_TOKEN"])
        (p.workdir / "get-token.sh").write_text('exec cat "secrets/$1"\n')
        p.template += APP_ENV
        p.write(project_extra=NOTIFY)
        yield {**w, "values": values}


def rid_of(link: str | None) -> str | None:
    return link.rsplit("/", 1)[-1] if link else None


def test_two_releases_through_every_stage_and_a_rollback_leave_no_secret_outside_the_env_files(world, tmp_path):
    p, repo, hosts, values = world["project"], world["repo"], world["hosts"], world["values"]
    env = {ENV_VAR: values["SECRET_KEY"]}
    log, outputs, live = tmp_path / "argv.jsonl", [], {}
    commands = ["deploy:test", "promote:staging", "promote:prod"]
    for n in (1, 2):
        if n == 2:
            repo.commit("r2", {"static/version.txt": "r2\n"})
        for command in commands:
            res = recorded_doit(p, log, command, env=env)
            assert res.returncode == 0, f"{command}:\n{res.stdout}\n{res.stderr}"
            outputs.append(res.stdout + res.stderr)
        live[n] = rid_of(p.link(hosts[0], "sites/current"))
    res = recorded_doit(p, log, "rollback:prod", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    outputs.append(res.stdout + res.stderr)

    # every host of both roles runs what each stage should: prod back on the first release
    assert live[1] != live[2]
    assert p.links("sites/current") == [f"../releases/{live[1]}"] * 3
    assert p.links("sites/staging") == p.links("sites/test") == [f"../releases/{live[2]}"] * 3
    for name, _ in STAGES:
        assert [h.path(f"{ROOT}/role-{name}").read_text() for h in hosts] == ["app\n", "app\n", "worker\n"]
    for h in hosts:
        checked = h.path(f"{ROOT}/checked.log").read_text().split()
        assert checked[:6] == ["test", "staging", "prod"] * 2, checked
    told = (p.workdir / "notify.log").read_text().splitlines()
    assert told[:6] == [f"{c} ok {live[n]}" for n in (1, 2) for c in commands], told
    assert told[6].startswith("rollback:prod ok ") and len(told) == 7, told

    # the secrets are in each live env file (0600), and nowhere else
    for h in hosts:
        for name, link in STAGES:
            env_file = h.path(f"{ROOT}/{link}/.deploy-env/{name}.env")
            assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
            assert f"SECRET_KEY={values['SECRET_KEY']}\n".encode() in env_file.read_bytes()
        found = files_holding(h.root, values.values())
        assert found and [f for f in found if "/.deploy-env/" not in f] == [], found
    for where, argv in recorded_argvs(log):
        assert not any(v in word for word in argv for v in values.values()), (where, argv)
    assert not any(v in out for out in outputs for v in values.values())
    assert [f for f in files_holding(Path(p.workdir), values.values())
            if not f.startswith("secrets" + os.sep)] == []   # not in doit's dep file, build/ or notify.log
