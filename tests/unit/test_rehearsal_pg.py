"""The rehearsal on PostgreSQL on plain inputs: Django 5.2's sqlmigrate SQL for PostgreSQL 15
(tests/fixtures/pg) judged through the report's own path (steps/migration/rehearsal_copy.py) into the
PostgreSQL kinds, and the guard's refusal naming them; the copy's schema rows as columns; where the copy
is read (passfile: on the host) and how this machine connects to it (password_env: through the tunnel,
the password in memory only); the probe's PostgreSQL sessions. The same against the real server and the
real migrations: tests/integration/test_rehearsal.py (both engines)."""
from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from doit_stages import hostside
from doit_stages.config import Database, Host, load_config
from doit_stages.engines import engine_for, pg_sqlcheck
from doit_stages.engines import postgresql_rehearsal as pgr
from doit_stages.hostside import rehearsal_probe, rehearsal_probe_pg
from doit_stages.steps.migration import rehearsal_copy
from doit_stages.steps.migration.rehearsal_copy import CopyProbe
from doit_stages.steps.migration.rehearsal_report import refusal
from doit_stages.transport import LocalTransport
from tests.lab.stages_ini import CODE_ONLY, THIS_MACHINE, stages_ini

FIX = Path(__file__).parents[1] / "fixtures" / "pg"
PASSFILE_DB = Database(name="test", engine="postgresql", dbname="blog_test", user="blog", port=5432,
                       passfile="~/.pgpass")
PASSWORD_DB = Database(name="test", engine="postgresql", dbname="blog_test", user="blog", port=5432,
                       host="db1.internal", password_env="PW", secret="s3cret:/@", sslmode="verify-full")
ENGINE = engine_for(PASSFILE_DB)


def config(tmp_path):
    ini = tmp_path / "stages.ini"
    ini.write_text(stages_ini(CODE_ONLY, THIS_MACHINE, {"project": {"source": ".", "max_write_stall": "2s"}}))
    return load_config(ini)


def fixture_sql(name: str) -> list[str]:
    """sqlmigrate's output as the runner collects it: one entry a line, comments included, no BEGIN/COMMIT."""
    lines = (FIX / f"{name}.sql").read_text().splitlines()
    return [line for line in lines if line.strip() and line not in ("BEGIN;", "COMMIT;")]


def plan(*names: str) -> dict:
    """The runner's plan line (rehearse-here: with the copy's schema, as pg_attribute gives it) for these
    migrations, pending after 0004, on a copy where posts_post and posts_comment exist."""
    return {"event": "plan", "vendor": "postgresql", "applied": ["posts.0001_initial"],
            "tables": ["django_migrations", "posts_comment", "posts_post"],
            "migrations": [{"name": f"posts.{n}", "sql": fixture_sql(n), "python_tables": []} for n in names],
            "columns": json.loads((FIX / f"{names[0]}.before.json").read_text())}


def empty_report() -> dict:
    return {"release": "blog-r2", "stage": "test", "migrations": [], "notes": [], "applied_before": []}


def kinds(m: dict) -> list[tuple]:
    return [(u["kind"], u["table"], u["column"]) for u in m["unsafe"]]


def test_the_postgresql_kinds_reach_the_report_and_the_guard_refuses_them(tmp_path):
    """An index built without CONCURRENTLY and a column made NOT NULL, on a passfile copy: the runner is
    asked to probe posts_post on the host; the report names each kind with its table and column, the
    runner's probe data become each migration's stall, and the guard refuses naming the kinds and the
    override."""
    copy, report = CopyProbe(LocalTransport(Host("local")), config(tmp_path), PASSFILE_DB), empty_report()
    with contextlib.ExitStack() as stack:
        answer = copy.begin(stack, plan("0015_summary_not_null", "0017_post_created_index"), report)
    assert copy.probe is None   # nothing opened from here: the password stays on the host
    verb, _, request = answer.partition(" ")
    assert verb == "probe" and json.loads(request) == {"tables": ["posts_post"], "interval": 0.05, "timeout": 9}
    not_null, index = report["migrations"]
    assert kinds(not_null) == [("set_not_null", "posts_post", "summary"),
                               ("not_null_without_default", "posts_post", "summary")]
    assert kinds(index) == [("index_without_concurrently", "posts_post", "created")]
    assert index["sql"] == ['CREATE INDEX "posts_created_idx" ON "posts_post" ("created");']  # no comments
    assert "CONCURRENTLY" in index["unsafe"][0]["why"]
    done = {"event": "done", "probe": {
        "sizes": {"posts_post": {"rows": 50, "rows_exact": True, "mb": 0.06}}, "tables": ["posts_post"],
        "errors": [], "end": 2.0, "spans": [["posts.0015_summary_not_null", 0.2, 0.3],
                                            ["posts.0017_post_created_index", 0.3, 1.0]],
        "writes": [[0.0, 0.001], [0.25, 0.26], [0.31, 0.95], [1.1, 1.101]]}}
    copy.finish(report, [], done)
    assert (not_null["max_write_stall"], index["max_write_stall"]) == (0.01, 0.64)
    assert index["tables"] == [{"name": "posts_post", "rows": 50, "rows_exact": True, "mb": 0.06}]
    assert report["probe"]["runs_on"] == "host" and report["probe"]["writes"] == 4
    assert any(n.startswith("passfile: sizes read and writes probed on local") for n in report["notes"])
    assert refusal(report, "blog-r2", None, 2.0, "").startswith(
        "posts.0015_summary_not_null is unsafe: set_not_null on posts_post.summary (SET NOT NULL scans")
    alone = dict(report, migrations=[dict(not_null, unsafe=[]), index])
    assert refusal(alone, "blog-r2", None, 2.0, "").startswith(
        "posts.0017_post_created_index is unsafe: index_without_concurrently on posts_post.created")
    assert refusal(report, "blog-r2", None, 2.0, "blog-r2") is None   # DEPLOY_ALLOW_UNSAFE=blog-r2
    assert refusal(report, "blog-r2", None, 2.0, "blog-r1") is not None


def test_a_rewrite_and_a_validating_foreign_key_are_named_and_a_concurrent_index_is_not(tmp_path):
    copy, report = CopyProbe(LocalTransport(Host("local")), config(tmp_path), PASSFILE_DB), empty_report()
    names = ("0016_comment_parent", "0017_post_created_index", "0018_post_title_index_concurrently",
             "0019_post_views_bigint")
    with contextlib.ExitStack() as stack:
        verb, _, request = copy.begin(stack, plan(*names), report).partition(" ")
    assert json.loads(request)["tables"] == ["posts_comment", "posts_post"]
    parent, index, concurrently, bigint = report["migrations"]
    assert kinds(parent) == [("add_foreign_key_validating", "posts_comment", "parent_id"),
                             ("index_without_concurrently", "posts_comment", "parent_id")]
    assert kinds(concurrently) == [] and concurrently["tables"] == [{"name": "posts_post"}]
    assert kinds(bigint) == [("alter_type", "posts_post", "views")]


def test_the_copys_schema_rows_become_columns_as_read_or_through_json():
    """read_schema's rows from here (tuples), or the runner's plan line (JSON lists): the same columns."""
    rows = [tuple(r) for r in json.loads((FIX / "0015_summary_not_null.before.json").read_text())]
    cols = ENGINE.copy_columns(rows)
    assert cols == ENGINE.copy_columns(json.loads(json.dumps(rows)))
    assert cols["posts_post"]["summary"] == pg_sqlcheck.Column("varchar(100)", True, False)
    assert cols["posts_post"]["id"] == pg_sqlcheck.Column("bigint", False, False)
    assert cols["posts_post"]["created"].type == "timestamp with time zone"
    assert set(cols) >= {"django_migrations", "posts_comment", "posts_post"}
    # the probe reads what the judge was made for: one query text
    assert rehearsal_probe_pg.COLUMNS is pg_sqlcheck.COLUMNS


def test_passfile_is_read_on_the_host_and_password_env_from_here():
    assert rehearsal_copy.reads_on_host(PASSFILE_DB) and not rehearsal_copy.reads_on_host(PASSWORD_DB)
    assert isinstance(ENGINE, pgr.PostgreSQLRehearsal) and ENGINE.name == "postgresql"
    assert ENGINE.probe is rehearsal_probe_pg and ENGINE.host_password_key == "passfile"
    with pytest.raises(ValueError, match=r"\[database:test\] has no password_env: its passfile stays on the hosts"):
        pgr.probe_password(PASSFILE_DB)
    with pytest.raises(ValueError):
        ENGINE.copy_connector(PASSFILE_DB, "127.0.0.1", 40000)


def test_the_probe_connects_at_the_tunnel_and_verifies_the_hosts_name():
    """Through the tunnel: libpq connects to its end (hostaddr) and checks the certificate against the name
    the hosts use (host); the password is an argument in memory, never a conninfo string on a command line."""
    kw = pgr.connect_kwargs(PASSWORD_DB, "127.0.0.1", 40000, pgr.probe_password(PASSWORD_DB))
    assert kw == {"dbname": "blog_test", "user": "blog", "password": "s3cret:/@", "port": 40000, "autocommit": True,
                  "connect_timeout": 10, "application_name": pgr.PROBE_APP_NAME, "host": "db1.internal",
                  "hostaddr": "127.0.0.1", "sslmode": "verify-full"}
    # hosts = local: no tunnel, the database as named
    direct = pgr.connect_kwargs(PASSWORD_DB, "db1.internal", 5432, "pw")
    assert direct["host"] == "db1.internal" and "hostaddr" not in direct
    # never named like the tool's own sessions, which the lock-wait report looks for
    assert not pgr.PROBE_APP_NAME.startswith("doit-stages")


def test_the_probe_bounds_each_postgresql_session_and_counts_a_timeout_as_a_stall():
    probe = rehearsal_probe_pg.Probe(lambda: None, [], timeout=9)
    assert probe.session_sql() == ("SELECT set_config('lock_timeout', '9s', false), "
                                   "set_config('statement_timeout', '9s', false)")
    assert probe.timed_out(Exception("canceling statement due to lock timeout\nCONTEXT: ..."))
    assert probe.timed_out(Exception("canceling statement due to statement timeout"))
    assert not probe.timed_out(Exception('relation "posts_post" does not exist'))
    assert isinstance(probe, rehearsal_probe.Probe)


def test_the_runner_finds_the_postgresql_probe_beside_it_as_on_a_host(tmp_path):
    """On the host the programs are files in one directory, imported by name (no package): the PostgreSQL
    probe imports its neighbour there, and nothing else but the standard library."""
    assert "rehearsal_probe_pg.py" in hostside.PROGRAMS
    for name in ("rehearsal_probe.py", "rehearsal_probe_pg.py"):
        (tmp_path / name).write_text(hostside.source(name))
    text = hostside.source("rehearsal_probe_pg.py")
    imports = {line.strip() for line in text.splitlines() if line.lstrip().startswith(("import ", "from "))}
    assert imports == {"from __future__ import annotations", "from .rehearsal_probe import Probe as _Probe",
                       "from rehearsal_probe import Probe as _Probe"}
    runner = hostside.source("rehearsal_runner.py")
    assert "    import rehearsal_probe\n    import rehearsal_probe_pg\n" in runner
    saved = {k: sys.modules.pop(k) for k in ("rehearsal_probe", "rehearsal_probe_pg") if k in sys.modules}
    sys.path.insert(0, str(tmp_path))
    try:
        pg = importlib.import_module("rehearsal_probe_pg")
        assert Path(pg.__file__).parent == tmp_path
        assert pg.Probe.__mro__[1] is sys.modules["rehearsal_probe"].Probe
        assert Path(sys.modules["rehearsal_probe"].__file__).parent == tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for k in ("rehearsal_probe", "rehearsal_probe_pg"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)
        shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
