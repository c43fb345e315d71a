"""tasks/engines/ on plain inputs: the registry (an unknown engine is one line naming the section), each
engine's pure answers (DATABASE_URL and the env beside it, a backup's extension and source, the server's
identity in words, where the rehearsal reads the copy), and the steps asking the engine instead of
branching on db.engine."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from doit_stages.config import Database
from doit_stages.engines import ENGINES, engine_for
from doit_stages.engines.base import Engine
from doit_stages.engines.mysql import parse_server_identity
from doit_stages.engines.sqlite import NO_PROBE, plan_sizes
from doit_stages.errors import StepError
from doit_stages.steps.database.dbguard import refuse_protected_target
from tests.lab.configs import mysql_db

TASKS = Path(__file__).resolve().parents[2] / "tasks"
SQLITE = Database(name="test", engine="sqlite", path="/srv/blog/db/test.sqlite3")


def test_the_registry_has_each_engine_by_its_name():
    assert sorted(ENGINES) == ["mysql", "postgresql", "sqlite"]
    assert all(isinstance(e, Engine) and e.name == name for name, e in ENGINES.items())
    assert engine_for(SQLITE).name == "sqlite" and engine_for(mysql_db(password_env="")).name == "mysql"


def test_an_unknown_engine_is_one_line_naming_the_section_and_the_known_ones():
    with pytest.raises(StepError) as info:
        engine_for(Database(name="prod", engine="oracle"))
    assert str(info.value) == "[database:prod] engine = oracle: no such engine; use one of mysql, postgresql, sqlite"


def test_the_registry_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        ENGINES["oracle"] = ENGINES["mysql"]


def test_app_env_of_each_engine(monkeypatch):
    monkeypatch.setenv("DST_PURE_PW", "s3cret")
    assert engine_for(SQLITE).app_env(SQLITE) == {"DATABASE_URL": "sqlite:////srv/blog/db/test.sqlite3"}
    assert engine_for(mysql_db()).app_env(mysql_db()) == {
        "DATABASE_URL": "mysql://blog:s3cret@db.example:3307/blog_prod"}
    cnf = mysql_db(password_env="", option_file="~/.my.cnf")
    env = engine_for(cnf).app_env(cnf)
    assert list(env) == ["DATABASE_URL", "DATABASE_OPTION_FILE"]   # the env file's order
    assert env == {"DATABASE_URL": "mysql://blog@db.example:3307/blog_prod", "DATABASE_OPTION_FILE": "~/.my.cnf"}


def test_backup_names_and_sources():
    mysql = mysql_db(password_env="")
    assert (engine_for(SQLITE).backup_ext, engine_for(mysql).backup_ext) == (".sqlite3.gz", ".sql.gz")
    assert engine_for(SQLITE).backup_source(SQLITE) == "/srv/blog/db/test.sqlite3"
    assert engine_for(mysql).backup_source(mysql) == "blog_prod@db.example:3307"


def test_only_mysql_bounds_the_migrations_lock_waits_and_reads_an_option_file_copy_on_the_host():
    assert engine_for(mysql_db()).bounded_lock_waits and not engine_for(SQLITE).bounded_lock_waits
    cnf = mysql_db(password_env="", option_file="~/.my.cnf")
    assert engine_for(cnf).reads_copy_on_host(cnf) and not engine_for(mysql_db()).reads_copy_on_host(mysql_db())
    assert not engine_for(SQLITE).reads_copy_on_host(SQLITE)
    assert engine_for(SQLITE).access_denied(SQLITE, "Access denied for user 'a'@'b' (using password: NO)") is None


def test_sqlite_copy_is_read_from_the_plan_not_probed():
    plan = {"sqlite": {"posts_post": {"sql": "CREATE TABLE \"posts_post\" (\"id\" integer NOT NULL PRIMARY KEY, "
                                             "\"title\" varchar(200) NOT NULL)", "rows": 3, "bytes": 3 * 1048576},
                       "empty": {"sql": "CREATE TABLE \"empty\" (\"id\" integer NOT NULL)", "rows": 0}}}
    note, columns, sizes = engine_for(SQLITE).copy_without_probe(plan)
    assert note == NO_PROBE == "sqlite: no write probe (one writer at a time); max_write_stall is null"
    assert sorted(columns) == ["empty", "posts_post"] and sorted(columns["posts_post"]) == ["id", "title"]
    assert sizes == plan_sizes(plan) == {"posts_post": {"rows": 3, "rows_exact": True, "mb": 3.0},
                                         "empty": {"rows": 0, "rows_exact": True, "mb": None}}
    assert engine_for(mysql_db()).copy_without_probe(plan) is None
    assert engine_for(SQLITE).probe is None and engine_for(mysql_db()).probe is not None


def test_server_identity_parsed_and_told():
    assert parse_server_identity("db1\t3306\t/var/lib/mysql/\n") == ("db1", 3306, "/var/lib/mysql")
    for bad in ("db1\t3306", "db1\tport\t/x", ""):
        with pytest.raises(ValueError, match="unexpected server identity"):
            parse_server_identity(bad)
    mysql = engine_for(mysql_db())
    assert mysql.describe_identity(("mysql", "db1", 3306, "/var/lib/mysql", "blog")) == "blog on db1:3306"
    assert engine_for(SQLITE).describe_identity(("sqlite", "web1", "/srv/x.sqlite3")) == "/srv/x.sqlite3 on web1"


@pytest.mark.parametrize("target, ident, where", [
    (mysql_db(name="test", password_env=""), ("mysql", "db1", 3306, "/var/lib/mysql", "blog"), "blog on db1:3306"),
    (SQLITE, ("sqlite", "web1", "/srv/x.sqlite3"), "/srv/x.sqlite3 on web1"),
])
def test_a_restore_target_that_reaches_a_protected_database_is_refused_naming_it(target, ident, where):
    protected = dataclasses.replace(target, name="prod")
    refuse_protected_target("test", target, ident, [(protected, ident[:-1] + ("other",))])   # another: passes
    with pytest.raises(StepError) as info:
        refuse_protected_target("test", target, ident, [(protected, ident)])
    assert str(info.value) == (f"restore:test: refused: [database:{target.name}] reaches the same database as "
                               f"[database:prod] ({where}); restoring would drop it. Nothing was changed: give "
                               f"[database:{target.name}] a database of its own")


def test_no_step_branches_on_the_engine():
    """The steps (and the modules above them) ask engine_for(db); only config may name the engines."""
    files = [*TASKS.glob("*.py"), *(TASKS / "steps").rglob("*.py")]
    found = [f"{p.relative_to(TASKS)}:{n}" for p in files for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"\.engine\s*(==|!=|\bin\b)|\"(mysql|sqlite)\"\s*(==|!=)", line)]
    assert found == []
