"""The tables of keys (config_project, config_stage, config_database): every key has a doc, a dataclass
field, a default that agrees with the dataclass, and a line in EXAMPLES below that writes it and reads it
back. Adding a key to a table without its example fails test_every_key_has_an_example. Plain files in tmp
dirs; no host touched."""
from __future__ import annotations

import dataclasses

import pytest

from doit_stages.config import HOOKS, ConfigError, Database, Host, Project, Stage, load_config
from doit_stages.config import database as config_database
from doit_stages.config import project as config_project
from doit_stages.config import stage as config_stage
from doit_stages.config.reader import Ini, Key, Problem, Section, whole
from tests.unit.inifile import LOCAL_INI, config_error, in_section, mysql_ini, pg_ini, set_key, write_ini

TABLES = {"project": config_project.PROJECT, "stage": config_stage.STAGE, "database": config_database.DATABASE,
          "sqlite": config_database.SQLITE, "mysql": config_database.MYSQL,
          "postgresql": config_database.POSTGRESQL}
# where each table's keys are written: (base ini, section, environ)
WHERE = {"project": (LOCAL_INI, "project", {}), "stage": (LOCAL_INI, "stage:staging", {}),
         "database": (LOCAL_INI, "database:prod", {}), "sqlite": (LOCAL_INI, "database:prod", {}),
         "mysql": (mysql_ini(), "database:test", {"BLOG_TEST_DB_PASSWORD": "x"}),
         "postgresql": (pg_ini(), "database:test", {"BLOG_TEST_DB_PASSWORD": "x"})}
S3 = {"project": {"artifact_store": "s3://bucket/pre"}}
BUILDOUT = {"project": {"build": "buildout"}}

# table -> key -> (value written, what the dataclass then holds (a callable: of the ini's directory),
#                  other keys the example needs: {section kind: {key: value}})
EXAMPLES = {
    "project": {
        "name": ("shop", "shop", {}),
        "source": ("src/app", lambda conf: (conf / "src" / "app").resolve(), {}),
        "scm": ("hg", "hg", {}),
        "build": ("command", "command", {}),
        "artifact_store": ("s3://bucket/pre", "s3://bucket/pre", {}),
        "s3_endpoint": ("http://127.0.0.1:9000", "http://127.0.0.1:9000", S3),
        "s3_region": ("eu-west-1", "eu-west-1", S3),
        "ssh_config": ("ssh/config", lambda conf: (conf / "ssh" / "config").resolve(), {}),
        "ssh_fast_kex": ("yes", True, {}),
        "infra_tests": ("checks", lambda conf: (conf / "checks").resolve(), {}),
        "shared_dirs": ("media, static", ("media", "static"), {}),
        "shared_files": ("config/local.py", ("config/local.py",), {}),
        "stage_dirs": ("cache", ("cache",), {}),
        "health_url": ("http://{host}/up", "http://{host}/up", {}),
        "revision": ("v1.2", "v1.2", {}),
        "deploy_root": ("/srv/shop/", "/srv/shop", {}),
        "build_command": ("make assets", "make assets", {}),
        "migrate_command": ("./manage.py migrate", "./manage.py migrate", {}),
        "reload_command": ("systemctl reload app", "systemctl reload app", {}),
        "reload_timeout": ("90s", 90, {}),
        "console_command": ("python manage.py shell_plus", "python manage.py shell_plus", {}),
        "log_command": ("tail -F shared/log/app.log", "tail -F shared/log/app.log", {}),
        "health_timeout": ("2m", 120, {}),
        "health_headers": ("Host: shop.example.com", (("Host", "shop.example.com"),), {}),
        "keep_releases": ("3", 3, {}),
        "keep_backups": ("4", 4, {}),
        "backup_max_age": ("2d", 172800, {}),
        "parallel": ("4", 4, {}),
        "max_write_stall": ("1m", 60, {}),
        "buildout_config": ("deploy/base.cfg", "deploy/base.cfg", BUILDOUT),
        "requirements": ("requirements/production.txt", "requirements/production.txt", {"project": {"build": "pip"}}),
    },
    "stage": {
        "hosts": ("ssh://deploy@web7:2222", (Host("ssh://deploy@web7:2222", "web7", "deploy", 2222),), {}),
        "database": ("", None, {"stage": {"settings": ""}}),
        "restore_from": ("test", "test", {}),
        "link": ("sites/stg", "sites/stg", {}),
        "settings": ("blog.settings.stg", "blog.settings.stg", {}),
        "health_url": ("http://{host}:81/h", "http://{host}:81/h", {}),
        "batch": ("50%", "50%", {}),
        "promote_from": ("", None, {}),
        "health_timeout": ("10s", 10, {}),
        "reload_command": ("touch r", "touch r", {}),
        "reload_timeout": ("5s", 5, {}),
        "console_command": ("bin/shell --stage staging", "bin/shell --stage staging", {}),
        "log_command": ("journalctl -fu gunicorn", "journalctl -fu gunicorn", {}),
        "max_fail": ("1", 1, {}),
        "buildout_config": ("stg.cfg", "stg.cfg", BUILDOUT),
        "health_headers": ("X-Forwarded-Proto: https, Host: stg.example.com",
                           (("X-Forwarded-Proto", "https"), ("Host", "stg.example.com")), {}),
    },
    "database": {
        "backup_host": ("ssh://deploy@db1:22", Host("ssh://deploy@db1:22", "db1", "deploy", 22), {}),
        "restore_on_failed_migration": ("yes", True, {}),
        "engine": ("sqlite", "sqlite", {}),
    },
    "sqlite": {"path": ("/srv/blog/db/other.sqlite3", "/srv/blog/db/other.sqlite3", {})},
    "mysql": {
        "name": ("shop_test", "shop_test", {}),
        "user": ("shop", "shop", {}),
        "host": ("db.internal", "db.internal", {}),
        "option_file": ("~/.my.cnf", "~/.my.cnf", {}),
        "password_env": ("BLOG_TEST_DB_PASSWORD", "BLOG_TEST_DB_PASSWORD", {}),
        "port": ("3307", 3307, {}),
        "migration_lock_timeout": ("2m", 120, {}),
        "migration_lock_retries": ("0", 0, {}),
    },
    "postgresql": {
        "name": ("shop_test", "shop_test", {}),
        "user": ("shop", "shop", {}),
        "host": ("db.internal", "db.internal", {}),
        # passfile instead of password_env (exactly one of them)
        "passfile": ("~/.pgpass", "~/.pgpass", {"postgresql": {"password_env": ""}}),
        "password_env": ("BLOG_TEST_DB_PASSWORD", "BLOG_TEST_DB_PASSWORD", {}),
        "port": ("5433", 5433, {}),
        "sslmode": ("verify-full", "verify-full", {}),
        "migration_lock_timeout": ("2m", 120, {}),
        "migration_lock_retries": ("0", 0, {}),
    },
}


def with_key(text: str, section: str, key: str, value: str) -> str:
    try:
        return set_key(text, section, key, value)
    except AssertionError:          # not written yet
        return in_section(text, section, f"{key} = {value}")


def loaded(table: str, tmp_path, keys: dict[str, str], needs: dict) -> tuple:
    """The config with `keys` written in the table's section (and what the example needs elsewhere)."""
    text, section, environ = WHERE[table]
    for kind, extra in needs.items():
        for k, v in extra.items():
            text = with_key(text, WHERE[kind][1], k, v)
    for k, v in keys.items():
        text = with_key(text, section, k, v)
    cfg = load_config(write_ini(tmp_path, text), environ=environ)
    obj = (cfg.project if table == "project" else cfg.stages[section[6:]] if table == "stage"
           else cfg.databases[section[9:]])
    return cfg, obj


def field(table: str, key: str) -> str:
    return TABLES[table][key].field or key


@pytest.mark.parametrize("table", TABLES)
def test_every_key_has_an_example(table):
    assert list(EXAMPLES[table]) == list(TABLES[table])


@pytest.mark.parametrize("table, key", [(t, k) for t in TABLES for k in TABLES[t]])
def test_every_key_is_read_into_its_field(tmp_path, table, key):
    (tmp_path / "conf" / "checks").mkdir(parents=True)
    value, expected, needs = EXAMPLES[table][key]
    _, obj = loaded(table, tmp_path, {key: value}, needs)
    want = expected(tmp_path / "conf") if callable(expected) else expected
    assert getattr(obj, field(table, key)) == want


@pytest.mark.parametrize("table, key", [(t, k) for t in TABLES for k in TABLES[t]])
def test_every_key_has_a_one_line_doc(table, key):
    doc = TABLES[table][key].doc
    assert doc.strip() and "\n" not in doc


def test_the_tables_name_every_field_of_the_dataclasses():
    """Every field given when a dataclass is built (not the argv fields, split from the commands then);
    hooks: the hook keys' table (test_hooks.py)."""
    def given(cls):
        return {f.name for f in dataclasses.fields(cls) if f.init}
    names = {t: {field(t, k) for k in TABLES[t]} for t in TABLES}
    assert names["project"] | {"hooks"} == given(Project)
    assert names["stage"] | {"name", "hooks", "env", "secrets", "roles", "primary"} == given(Stage)  # appenv, roles
    assert names["database"] | names["sqlite"] | names["mysql"] | names["postgresql"] | \
        {"name", "secret", "missing_password"} == given(Database)


def test_every_command_key_is_split_into_its_argv_field():
    """The *_argv fields are the command keys' (shell=True) and nothing else."""
    for cls, table in ((Project, config_project.PROJECT), (Stage, config_stage.STAGE)):
        derived = {f.name for f in dataclasses.fields(cls) if not f.init}
        assert derived == {k.replace("_command", "_argv") for k, spec in table.items() if spec.shell}


@pytest.mark.parametrize("table", TABLES)
def test_a_key_left_out_gets_the_dataclass_default(tmp_path, table):
    """Two sources of a default (the table; the dataclass, built by hand in tests and steps) must agree.
    Not deploy_root, link, backup_host: their defaults come from other values (tested in test_config)."""
    text, section, environ = WHERE[table]
    ini = Ini(write_ini(tmp_path, text), text, environ)
    _, obj = loaded(table, tmp_path, {}, {})
    defaults = {f.name: f.default for f in dataclasses.fields(obj) if f.default is not dataclasses.MISSING}
    for key in TABLES[table]:
        if (table, key) == ("postgresql", "port"):   # the dataclass's is MySQL's 3306; PostgreSQL's is 5432
            assert obj.port == 5432
            continue
        if not ini.written(section, key) and key not in ("deploy_root", "link", "backup_host"):
            assert getattr(obj, field(table, key)) == defaults[field(table, key)], key


def test_the_inherited_keys_are_the_stage_keys_whose_default_is_the_projects():
    assert config_stage.INHERITED == ("health_url", "health_timeout", "reload_command", "reload_timeout",
                                      "console_command", "log_command", "buildout_config", "health_headers")
    assert set(config_stage.INHERITED) <= set(config_project.PROJECT)


@pytest.mark.parametrize("key", config_stage.INHERITED)
def test_a_stage_takes_an_inherited_key_from_the_project_unless_it_sets_its_own(tmp_path, key):
    value, expected, _ = EXAMPLES["project"][key]
    own, own_expected, _ = EXAMPLES["stage"][key]
    text = in_section(set_key(LOCAL_INI, "project", "build", "buildout"), "project", f"{key} = {value}")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert getattr(cfg.project, key) == getattr(cfg.stages["test"], key) == getattr(cfg.stages["staging"], key) \
        == expected
    cfg = load_config(write_ini(tmp_path, in_section(text, "stage:staging", f"{key} = {own}")), environ={})
    assert getattr(cfg.stages["test"], key) == expected and getattr(cfg.stages["staging"], key) == own_expected


@pytest.mark.parametrize("table, section", [("project", "project"), ("stage", "stage:test"),
                                            ("database", "database:prod")])
def test_an_unknown_key_lists_exactly_the_tables_keys(tmp_path, table, section):
    msg = config_error(tmp_path, in_section(LOCAL_INI, section, "colour = blue"))
    keys = config_database.KEYS if table == "database" else {**TABLES[table], **HOOKS}
    keys = {**keys, "primary": None} if table == "stage" else keys
    assert msg.endswith(f"[{section}] colour: unknown key; known keys: {', '.join(sorted(keys))}")


@pytest.mark.parametrize("key", list(config_database.MYSQL))
def test_every_mysql_key_in_a_sqlite_section_is_refused(tmp_path, key):
    msg = config_error(tmp_path, in_section(LOCAL_INI, "database:prod", f"{key} = {EXAMPLES['mysql'][key][0]}"))
    assert f"[database:prod] {key}: not used with engine = sqlite; remove it (sqlite takes only path)" in msg


def test_the_sqlite_path_in_a_mysql_section_is_refused(tmp_path):
    msg = config_error(tmp_path, in_section(mysql_ini(), "database:test", "path = /srv/x.sqlite3"),
                       {"BLOG_TEST_DB_PASSWORD": "x"})
    assert "[database:test] path: only for engine = sqlite; remove it" in msg


# -- the reader itself, on a table made up here: what adding a key takes ------------------------------------
def plus_a(value: str, sec: Section) -> int:
    if not value:
        raise Problem("b needs a", key="a")
    return int(value) + sec.values["a"]


TABLE = {"a": Key(whole(1), "5", "a number"), "b": Key(plus_a, lambda sec: str(sec.values["a"]), "a + a")}


def read(tmp_path, text: str) -> dict:
    path = tmp_path / "stages.ini"
    return Section(Ini(path, text, {}), "x", TABLE).read()


def test_a_section_is_read_key_by_key_with_defaults_that_may_use_the_keys_before(tmp_path):
    assert read(tmp_path, "[x]\n") == {"a": 5, "b": 10}
    assert read(tmp_path, "[x]\na = 2\nb = 1\n") == {"a": 2, "b": 3}


def test_a_problem_names_the_line_of_its_key_and_the_default_as_example(tmp_path):
    with pytest.raises(ConfigError, match=r"^stages.ini:3: \[x\] a: '0' is not a whole number >= 1; write e.g. 5$"):
        read(tmp_path, "[x]\nb = 1\na = 0\n")
    with pytest.raises(ConfigError, match=r"^stages.ini:3: \[x\] a: b needs a$"):
        read(tmp_path, "[x]\nb =\na = 1\n")
