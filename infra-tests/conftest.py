"""testinfra checks of one stage. `doit verify:<stage>` runs this directory as a subprocess with
STAGES_INI, VERIFY_STAGE and VERIFY_RELEASE set; the hosts come from stages.ini through tasks/config.py."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.config import load_config  # noqa: E402
from tasks.layout import Layout  # noqa: E402


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
    return load_config()


@pytest.fixture(scope="session")
def stage(config):
    return config.stages[os.environ["VERIFY_STAGE"]]


@pytest.fixture(scope="session")
def release():
    return os.environ["VERIFY_RELEASE"]


@pytest.fixture(scope="session")
def layout(config):
    return Layout(config.project.deploy_root)
