"""config/appenv.py: [env], [secrets] and their per-stage sections read at load, the secrets' sources read
once per run (command: through a fake runner here: tests/unit starts no process; the real one is in
tests/integration/test_app_secrets.py), every mistake one line naming the secret and never its value."""
from __future__ import annotations

import os

import pytest

from doit_stages.config import ConfigError, load_config
from doit_stages.config.appenv import TOOL_NAMES, read_secrets
from doit_stages.layout import Layout
from doit_stages.start import stages_writing_env
from doit_stages.steps.environment import env_file, env_values
from tests.lab.configs import make_config, mysql_db
from tests.unit.inifile import LOCAL_INI, config_error, line_of, write_ini

VALUE = "s3cr3t 'quoted' $(touch pwned)"
RID = "blog-2026-01-01-0000-0123456789ab"


class FakeRun:
    """localcmd.call's shape: (code, stdout, stderr); records each argv it was asked to run."""

    def __init__(self, code=0, out=VALUE.encode() + b"\n", err=b""):
        self.code, self.out, self.err, self.argvs = code, out, err, []

    def __call__(self, argv, cwd=None, timeout=None):
        self.argvs.append((tuple(argv), cwd))
        return self.code, self.out, self.err


def app_ini(extra: str) -> str:
    return LOCAL_INI + "\n" + extra


def load(tmp_path, extra: str, environ=None):
    return load_config(write_ini(tmp_path, app_ini(extra)), environ={} if environ is None else environ)


def secret_file(tmp_path, data: bytes, mode: int = 0o600, name: str = "key"):
    path = tmp_path / "conf" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


EXAMPLE = """\
[env]
ALLOWED_HOSTS = blog.example.com   ; a comment
DJANGO_DEBUG = 0
SENTRY_DSN =

[env:staging]
DJANGO_DEBUG = 1

[secrets]
SECRET_KEY = env:BLOG_SECRET_KEY
API_TOKEN = file:key
STRIPE_KEY = command:pass show 'blog/stripe key'   ; a comment

[secrets:staging]
SENTRY_DSN = env:SENTRY_DSN
"""


def test_sections_are_read_per_stage_the_stages_own_winning(tmp_path):
    config = load(tmp_path, EXAMPLE)
    test, staging = config.stages["test"], config.stages["staging"]
    assert test.env == (("ALLOWED_HOSTS", "blog.example.com"), ("DJANGO_DEBUG", "0"), ("SENTRY_DSN", ""))
    assert staging.env == (("ALLOWED_HOSTS", "blog.example.com"), ("DJANGO_DEBUG", "1"))
    assert [(s.name, s.kind, s.source) for s in test.secrets] == [
        ("SECRET_KEY", "env", "BLOG_SECRET_KEY"), ("API_TOKEN", "file", "key"),
        ("STRIPE_KEY", "command", "pass show 'blog/stripe key'")]
    assert test.secrets[1].path == tmp_path / "conf" / "key"
    assert test.secrets[2].argv == ("pass", "show", "blog/stripe key")
    assert [s.name for s in staging.secrets] == ["SECRET_KEY", "API_TOKEN", "STRIPE_KEY", "SENTRY_DSN"]
    assert test.secrets[0].where == f"stages.ini:{line_of(app_ini(EXAMPLE), 'SECRET_KEY')}: [secrets] SECRET_KEY"


def test_file_source_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load(tmp_path, "[secrets]\nK = file:~/.config/blog/k\n")
    assert config.stages["test"].secrets[0].path == tmp_path / "home" / ".config" / "blog" / "k"


@pytest.mark.parametrize("extra, where, words", [
    ("[env]\n1X = a\n", "[env] 1X", "no variable name"),
    ("[env]\nMY-VAR = a\n", "[env] MY-VAR", "no variable name"),
    ("[env:staging]\nDATABASE_URL = sqlite://\n", "[env:staging] DATABASE_URL", "set by doit-stages itself"),
    ("[secrets]\nSTAGE_DIR = env:X\n", "[secrets] STAGE_DIR", "set by doit-stages itself"),
    ("[env]\nCERT = line one\n  line two\n", "[env] CERT", "line break"),
    ("[secrets]\nK = vault:x\n", "[secrets] K", "names no source"),
    ("[secrets]\nK = literal\n", "[secrets] K", "a literal value goes in [env]"),
    ("[secrets]\nK = env:\n", "[secrets] K", "env: names nothing"),
    ("[secrets]\nK = env:MY-VAR\n", "[secrets] K", "no environment variable name"),
    ("[secrets]\nK = command:pass 'open\n", "[secrets] K", "cannot be split"),
    ("[env:nope]\nK = 1\n", "[env:nope]", "no [stage:nope]"),
    ("[secrets:nope]\nK = env:X\n", "[secrets:nope]", "no [stage:nope]"),
    ("[env]\nK = 1\n[secrets]\nK = env:X\n", "[secrets] K", "in [env] too"),
])
def test_mistakes_are_one_line_naming_section_and_key(tmp_path, extra, where, words):
    msg = config_error(tmp_path, app_ini(extra))
    assert where in msg and words in msg, msg


def test_tool_names_are_every_name_the_tool_writes():
    db = mysql_db(password_env="", option_file="~/.my.cnf")
    config, stage = make_config(db)
    assert set(env_values(Layout("/srv/blog"), config, stage, RID)) <= set(TOOL_NAMES)


def test_secrets_are_read_once_into_the_env_file_and_never_into_a_repr(tmp_path):
    secret_file(tmp_path, b"from-file\n")
    config = load(tmp_path, EXAMPLE)
    run = FakeRun()
    read_secrets(config, config.stages.values(), run, environ={"BLOG_SECRET_KEY": VALUE, "SENTRY_DSN": "dsn"})
    assert run.argvs == [(("pass", "show", "blog/stripe key"), str(tmp_path / "conf"))]   # once for both stages
    staging = config.stages["staging"]
    values = env_values(Layout("/srv/blog"), config, staging, RID)
    assert [k for k in values if k not in TOOL_NAMES] == ["ALLOWED_HOSTS", "DJANGO_DEBUG", "SECRET_KEY",
                                                           "API_TOKEN", "STRIPE_KEY", "SENTRY_DSN"]
    assert values["SECRET_KEY"] == VALUE and values["API_TOKEN"] == "from-file" and values["STRIPE_KEY"] == VALUE
    text = env_file(Layout("/srv/blog"), config, staging, RID)
    assert b"SECRET_KEY='s3cr3t '\"'\"'quoted'\"'\"' $(touch pwned)'\n" in text
    assert VALUE not in repr(config) and "from-file" not in repr(config)


def test_a_stage_without_secrets_needs_no_reading_and_one_with_them_does(tmp_path):
    config = load(tmp_path, "[env]\nA = 1\n[secrets:staging]\nK = env:K\n")
    assert env_values(Layout("/srv/blog"), config, config.stages["test"], RID)["A"] == "1"
    with pytest.raises(ConfigError, match="secrets of stage staging .* were not read"):
        env_values(Layout("/srv/blog"), config, config.stages["staging"], RID)


def read_error(tmp_path, extra: str, run=None, environ=None) -> str:
    config = load(tmp_path, extra)
    with pytest.raises(ConfigError) as info:
        read_secrets(config, [config.stages["test"]], run or FakeRun(), environ={} if environ is None else environ)
    msg = str(info.value)
    assert "\n" not in msg and VALUE not in msg and "from-file" not in msg, msg
    assert msg.startswith("stages.ini:") and "[secrets] K" in msg, msg
    assert "test" not in config.secret_values_read
    return msg


def test_an_unset_variable_or_an_empty_value_is_named(tmp_path):
    assert "environment variable BLOG_K is not set" in read_error(tmp_path, "[secrets]\nK = env:BLOG_K\n")
    assert "gave an empty value" in read_error(tmp_path, "[secrets]\nK = env:BLOG_K\n", environ={"BLOG_K": ""})


def test_a_value_with_a_line_break_or_nul_is_refused(tmp_path):
    for bad in ("a\nb", "a\rb", "a\0b"):
        msg = read_error(tmp_path, "[secrets]\nK = env:BLOG_K\n", environ={"BLOG_K": bad})
        assert "line break" in msg or "NUL" in msg


def test_file_source_content_without_its_line_end_and_not_world_readable(tmp_path):
    for data, want in ((b"from-file\n", "from-file"), (b"from-file\r\n", "from-file"), (b"from-file", "from-file"),
                       (b"from-file \n", "from-file ")):
        secret_file(tmp_path, data)
        config = load(tmp_path, "[secrets]\nK = file:key\n")
        read_secrets(config, [config.stages["test"]], FakeRun(), environ={})
        assert config.secret_values(config.stages["test"]) == {"K": want}
    secret_file(tmp_path, b"from-file\n", mode=0o644)
    msg = read_error(tmp_path, "[secrets]\nK = file:key\n")
    assert "readable by every user" in msg and "0644" in msg and "chmod o-rwx" in msg
    secret_file(tmp_path, b"from-file\nsecond line\n")
    assert "line break" in read_error(tmp_path, "[secrets]\nK = file:key\n")
    secret_file(tmp_path, b"\xff\xfe")
    assert "not UTF-8" in read_error(tmp_path, "[secrets]\nK = file:key\n")
    assert "cannot read" in read_error(tmp_path, "[secrets]\nK = file:missing\n")
    assert "is not a file" in read_error(tmp_path, "[secrets]\nK = file:.\n")


def test_command_source_one_line_of_stdout_and_a_failure_names_stderr_not_stdout(tmp_path):
    msg = read_error(tmp_path, "[secrets]\nK = command:pass show blog\n",
                     run=FakeRun(1, VALUE.encode(), b"gpg: decryption failed\nError: blog is not in the store\n"))
    assert msg.endswith("command:pass failed (exit 1): Error: blog is not in the store"), msg
    assert "more" not in read_error(tmp_path, "[secrets]\nK = command:pass show blog\n", run=FakeRun(127, b"", b""))
    msg = read_error(tmp_path, "[secrets]\nK = command:pass show blog\n", run=FakeRun(0, b"one\ntwo\n"))
    assert "line break" in msg
    assert "empty value" in read_error(tmp_path, "[secrets]\nK = command:pass show blog\n", run=FakeRun(0, b"\n"))


@pytest.mark.parametrize("argv, stages", [
    (["deploy:test"], ["test"]), (["promote:staging", "build:test"], ["staging", "test"]),
    (["rollback:staging"], ["staging"]), (["status"], []), (["verify:test", "switch:test", "backup:prod"], []),
    (["migrate:test", "unlock:staging", "rehearsal:staging", "upload:test"], []),
])
def test_only_the_commands_that_write_an_env_file_read_secrets(tmp_path, argv, stages):
    config = load(tmp_path, "")
    assert [s.name for s in stages_writing_env(config, argv)] == stages
