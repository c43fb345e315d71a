"""steps/environment.py on plain inputs: DATABASE_URL percent-encoded, the values a stage's env holds (the
env file as sh reads it: tests/integration/test_environment.py)."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from doit_stages.config import Database
from doit_stages.engines import engine_for
from doit_stages.layout import Layout
from doit_stages.steps.environment import env_values
from tests.lab.configs import NASTY, make_config, mysql_db


def database_url(db: Database) -> str:
    return engine_for(db).app_env(db)["DATABASE_URL"]


URL_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%:/@")


def test_database_url_percent_encodes(monkeypatch, tmp_path):
    password = NASTY.format(marker=tmp_path / "pwned")
    monkeypatch.setenv("DST_PURE_PW", password)
    url = database_url(mysql_db(user="us er@x", dbname="blog prod"))
    assert set(url) <= URL_SAFE, f"unencoded characters: {set(url) - URL_SAFE}"
    parts = urlsplit(url)
    assert parts.scheme == "mysql" and parts.hostname == "db.example" and parts.port == 3307
    assert unquote(parts.username) == "us er@x" and unquote(parts.password) == password
    assert unquote(parts.path) == "/blog prod"


def test_database_url_without_password_and_sqlite():
    assert database_url(mysql_db(password_env="", option_file="/etc/x.cnf")) == "mysql://blog@db.example:3307/blog_prod"
    sqlite = Database(name="test", engine="sqlite", path="/srv/blog/db/test.sqlite3")
    assert database_url(sqlite) == "sqlite:////srv/blog/db/test.sqlite3"


def test_option_file_path_is_exported(tmp_path):
    db = mysql_db(password_env="", option_file="~/.my.cnf")
    config, stage = make_config(db)
    values = env_values(Layout(config.project.deploy_root), config, stage, "blog-2026-01-01-0000-0123456789ab")
    assert values["DATABASE_OPTION_FILE"] == "~/.my.cnf"
    assert values["STAGE_DIR"] == "/srv/blog/shared/test/blog-2026-01-01-0000-0123456789ab"
