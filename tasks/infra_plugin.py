"""The fixtures of every stage check, loaded by `doit verify:<stage>` as a pytest plugin
(`-p doit_stages.infra_plugin`), so that the built-in checks (infra-tests/) and a project's own
(`[project] infra_tests =`) get the same ones: host (testinfra, one per host of the stage), stage,
release, layout and config. verify sets STAGES_INI, VERIFY_STAGE, VERIFY_RELEASE and VERIFY_HOSTS."""
from __future__ import annotations

import os

import pytest

from .config import load_config
from .layout import Layout


def testinfra_spec(host) -> str:
    if host.local:
        return "local://"
    user = f"{host.user}@" if host.user else ""
    return f"ssh://{user}{host.hostname}" + (f":{host.port}" if host.port else "")


def pytest_configure(config):
    cfg = load_config()
    stage = cfg.stages[os.environ["VERIFY_STAGE"]]
    only = set(filter(None, os.environ.get("VERIFY_HOSTS", "").split(",")))
    config.option.hosts = ",".join(testinfra_spec(h) for h in stage.hosts if not only or h.spec in only)
    ssh_config = os.environ.get("VERIFY_SSH_CONFIG") or cfg.project.ssh_config
    if ssh_config:
        config.option.ssh_config = str(ssh_config)


@pytest.fixture(scope="module", autouse=True)
def _known_encoding(host):
    """testinfra asks every host for its encoding with a remote `python3 -c ...` before its first command:
    one more ssh process and a Python start-up per host. The checks read ASCII paths and JSON, and the
    hosts' tools speak UTF-8: tell it instead of asking."""
    if getattr(host.backend, "_encoding", "") is None:
        host.backend._encoding = "utf-8"


@pytest.fixture(scope="session")
def config():
    """The loaded stages.ini (doit_stages.config.Config)."""
    return load_config()


@pytest.fixture(scope="session")
def stage(config):
    return config.stages[os.environ["VERIFY_STAGE"]]


@pytest.fixture(scope="session")
def release():
    """The id of the release the stage's link points at on the hosts checked."""
    return os.environ["VERIFY_RELEASE"]


@pytest.fixture(scope="session")
def layout(config):
    """Every path on a host: layout.release(release), layout.link(stage.link), layout.env_file(stage.name)
    (a symlink to the live release's own env file, layout.release_env(release, stage.name))."""
    return Layout(config.project.deploy_root)
