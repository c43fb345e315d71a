"""The app's env file (steps/environment.py) as `sh` reads it (`set -a; . file`): a nasty password, quotes and
$ in values, a stage without a database."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from doit_stages.config import Database
from doit_stages.engines.mysql import database_url
from doit_stages.layout import Layout
from doit_stages.steps.environment import env_file, env_values
from tests.lab.configs import NASTY, make_config, mysql_db

RID = "blog-2026-01-01-0000-0123456789ab"


def source_env_file(path: Path) -> dict[str, str]:
    """What `sh` sees after `set -a; . file` (env -0: values may hold anything but NUL)."""
    out = subprocess.run(["sh", "-c", 'set -a; . "$1" || exit 9; env -0', "sh", str(path)], capture_output=True,
                         env={"PATH": os.environ["PATH"]}, check=True, cwd=path.parent).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if item)


def test_env_file_is_sourceable_with_a_nasty_password(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    password = NASTY.format(marker=marker)
    monkeypatch.setenv("DST_PURE_PW", password)
    config, stage = make_config(mysql_db())
    path = tmp_path / "test.env"
    path.write_bytes(env_file(Layout(config.project.deploy_root), config, stage, RID))
    env = source_env_file(path)
    assert env["STAGE"] == "test"
    assert env["STAGE_DIR"] == f"/srv/blog/shared/test/{RID}"
    assert env["DJANGO_SETTINGS_MODULE"] == "blog.settings.test"
    assert env["DATABASE_URL"] == database_url(mysql_db())
    assert unquote(urlsplit(env["DATABASE_URL"]).password) == password
    assert not marker.exists(), "sourcing the env file ran a command"
    assert password not in path.read_text()           # only ever URL-encoded


def test_env_file_values_with_quotes_survive(monkeypatch, tmp_path):
    db = Database(name="test", engine="sqlite", path="/srv/it's a \"db\"/$HOME`x`.sqlite3")
    config, stage = make_config(db, {"settings": "it's \"$(odd)\""})
    path = tmp_path / "test.env"
    path.write_bytes(env_file(Layout(config.project.deploy_root), config, stage, RID))
    env = source_env_file(path)
    assert env["DATABASE_URL"] == "sqlite:///" + quote(db.path, safe="/")
    assert env["DJANGO_SETTINGS_MODULE"] == "it's \"$(odd)\""
    assert set(env) >= set(env_values(Layout(config.project.deploy_root), config, stage, RID))


def test_env_file_of_a_stage_without_database(tmp_path):
    config, stage = make_config(None)
    assert "DATABASE_URL" not in env_values(Layout(config.project.deploy_root), config, stage, RID)
    path = tmp_path / "test.env"
    path.write_bytes(env_file(Layout(config.project.deploy_root), config, stage, RID))
    assert source_env_file(path)["STAGE_DIR"] == f"/srv/blog/shared/test/{RID}"
