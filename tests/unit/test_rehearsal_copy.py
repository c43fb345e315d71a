"""Where the rehearsal reads the copy and probes it (steps/migration/rehearsal_copy.py), on plain inputs: a database
with option_file is read on the host (the runner is asked to probe; this machine opens no tunnel and never
asks for the password), and the runner's data comes back as the same report as the deployer's own probe."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from doit_stages import hostside
from doit_stages.config import Database, Host, load_config, split_command
from doit_stages.engines.mysql import credentials
from doit_stages.steps.migration import rehearsal_copy
from doit_stages.steps.migration.rehearsal import runner_argv
from doit_stages.steps.migration.rehearsal_copy import CopyProbe, reads_on_host
from doit_stages.steps.migration.rehearsal_report import MigrateOutput, refusal
from doit_stages.transport import LocalTransport
from tests.lab.stages_ini import CODE_ONLY, THIS_MACHINE, stages_ini

FIX = Path(__file__).parents[1] / "fixtures" / "rehearsal" / "mysql"
OPTION_FILE_DB = Database(name="test", engine="mysql", dbname="blog_test", user="blog", option_file="~/.my.cnf")
PASSWORD_DB = Database(name="test", engine="mysql", dbname="blog_test", user="blog", password_env="PW",
                       secret="s3cret")


def config(tmp_path):
    ini = tmp_path / "stages.ini"
    ini.write_text(stages_ini(CODE_ONLY, THIS_MACHINE, {"project": {"source": ".", "max_write_stall": "2s"}}))
    return load_config(ini)


def plan() -> dict:
    """The runner's plan line for 0004 + 0005 on a copy where posts_post exists (rehearse-here: with its schema)."""
    names = ["0004_post_subtitle", "0005_post_title_text"]
    return {"event": "plan", "vendor": "mysql", "applied": ["posts.0001_initial"],
            "tables": ["django_migrations", "posts_comment", "posts_post"],
            "migrations": [{"name": f"posts.{n}", "sql": [(FIX / f"{n}.sql").read_text()], "python_tables": []}
                           for n in names],
            "columns": json.loads((FIX / "0004_post_subtitle.before.json").read_text())}


def empty_report() -> dict:
    return {"release": "blog-r2", "stage": "test", "migrations": [], "notes": [], "applied_before": []}


def test_credentials_are_only_ever_those_of_password_env():
    """The one way this machine gets a database password: it never reads an option file (it has no
    transport to read one with), it refuses instead."""
    assert credentials(PASSWORD_DB) == ("blog", "s3cret")
    with pytest.raises(ValueError, match=r"\[database:test\] has no password_env"):
        credentials(OPTION_FILE_DB)
    assert reads_on_host(OPTION_FILE_DB) and not reads_on_host(PASSWORD_DB)
    assert not reads_on_host(Database(name="t", engine="sqlite", path="/srv/x.sqlite3"))


def test_option_file_copy_is_probed_by_the_runner_and_attributed_on_the_hosts_clock(tmp_path):
    copy, report = CopyProbe(LocalTransport(Host("local")), config(tmp_path), OPTION_FILE_DB), empty_report()
    with contextlib.ExitStack() as stack:
        answer = copy.begin(stack, plan(), report)
    assert copy.probe is None   # no tunnel and no connection from here
    verb, _, request = answer.partition(" ")
    assert verb == "probe" and json.loads(request) == {"tables": ["posts_post"], "interval": 0.05, "timeout": 9}
    assert [u["kind"] for u in report["migrations"][1]["unsafe"]] == ["alter_type"]
    # the runner's last line, as rehearsal_runner.probe_result writes it (seconds since its probe started)
    done = {"event": "done", "probe": {
        "sizes": {"posts_post": {"rows": 200000, "rows_exact": True, "mb": 23.5}}, "tables": ["posts_post"],
        "errors": [], "end": 4.0, "spans": [["posts.0004_post_subtitle", 0.5, 0.6],
                                            ["posts.0005_post_title_text", 0.6, None]],
        "writes": [[0.0, 0.002], [0.55, 0.553], [0.58, 3.1], [3.15, 3.151]]}}
    copy.finish(report, [("posts.0004_post_subtitle", 100.0, 100.1)], done)  # this machine's spans: unused
    first, second = report["migrations"]
    assert (first["max_write_stall"], second["max_write_stall"]) == (0.003, 2.52)
    assert second["tables"] == [{"name": "posts_post", "rows": 200000, "rows_exact": True, "mb": 23.5}]
    assert report["probe"] == {"tables": ["posts_post"], "interval": 0.05, "timeout": 9, "runs_on": "host",
                               "writes": 4, "errors": []}
    assert any("option_file" in n for n in report["notes"])
    assert "blocked writes for 2.52s" in refusal(dict(report, migrations=[dict(second, unsafe=[])]), "blog-r2",
                                                 None, 2.0, "")


def test_nothing_to_probe_needs_no_database_at_all(tmp_path):
    copy, report = CopyProbe(LocalTransport(Host("local")), config(tmp_path), OPTION_FILE_DB), empty_report()
    fresh = dict(plan(), tables=["django_migrations"], columns=[])
    with contextlib.ExitStack() as stack:
        assert copy.begin(stack, fresh, report) == "go"
    copy.finish(report, [], {"event": "done", "probe": None})
    assert report["migrations"][0]["max_write_stall"] is None and "probe" not in report


TAG_CREATE = ["--", "-- Create model Tag", "--", "CREATE TABLE `posts_tag` (`id` bigint AUTO_INCREMENT NOT NULL "
              "PRIMARY KEY, `post_id` bigint NOT NULL);",
              "ALTER TABLE `posts_tag` ADD CONSTRAINT `posts_tag_post_id_fk` FOREIGN KEY (`post_id`) REFERENCES "
              "`posts_post` (`id`);"]
TAG_ALTER = ["ALTER TABLE `posts_tag` DROP FOREIGN KEY `posts_tag_post_id_fk`;",
             "ALTER TABLE `posts_tag` MODIFY `post_id` bigint NULL;",
             "ALTER TABLE `posts_tag` ADD CONSTRAINT `posts_tag_post_id_fk` FOREIGN KEY (`post_id`) REFERENCES "
             "`posts_post` (`id`);"]
UNREAD = "ProgrammingError: (1146, \"Table 'blog_test.posts_tag' doesn't exist\")"


def test_a_migration_whose_sql_was_not_collected_is_judged_on_the_sql_migrate_executed(tmp_path):
    """0004 creates posts_tag, 0005 alters it: MySQL's schema editor could not collect 0005's SQL before
    0004 ran (sql null). Nothing existing to probe; at the end 0005 is judged on what migrate executed."""
    copy, report = CopyProbe(LocalTransport(Host("local")), config(tmp_path), OPTION_FILE_DB), empty_report()
    fresh = dict(plan(), migrations=[
        {"name": "posts.0004_tag", "sql": TAG_CREATE, "python_tables": []},
        {"name": "posts.0005_tag_alter", "sql": None, "sql_error": UNREAD, "python_tables": [],
         "operation_tables": ["posts_tag"]}])
    with contextlib.ExitStack() as stack:
        assert copy.begin(stack, fresh, report) == "go"
    copy.finish(report, [], {"event": "done", "probe": None, "executed": {"posts.0005_tag_alter": TAG_ALTER}})
    created, altered = report["migrations"]
    assert created["sql"] == TAG_CREATE[3:] and altered["sql"] == TAG_ALTER
    assert altered["tables"] == [{"name": "posts_tag", "rows": 0, "mb": 0.0, "created": True}]
    assert altered["unsafe"] == [] and altered["max_write_stall"] is None   # the live release never used it
    assert any(n.startswith("posts.0005_tag_alter: its SQL could not be collected") and "doesn't exist" in n
               and "what migrate executed" in n for n in report["notes"]), report["notes"]


def test_an_existing_table_named_by_an_unread_migration_is_probed_and_its_executed_sql_judged(tmp_path):
    copy, report = CopyProbe(LocalTransport(Host("local")), config(tmp_path), OPTION_FILE_DB), empty_report()
    unread = dict(plan(), migrations=[{"name": "posts.0006_remove_post_subtitle", "sql": None, "sql_error": "X: y",
                                       "python_tables": [], "operation_tables": ["posts_post"]}])
    with contextlib.ExitStack() as stack:
        verb, _, request = copy.begin(stack, unread, report).partition(" ")
    assert verb == "probe" and json.loads(request)["tables"] == ["posts_post"]
    assert report["migrations"][0]["unsafe"] == []   # nothing known yet
    done = {"event": "done", "executed": {"posts.0006_remove_post_subtitle": [
        "ALTER TABLE `posts_post` DROP COLUMN `subtitle`;"]}, "probe": {
        "sizes": {"posts_post": {"rows": 10, "rows_exact": True, "mb": 0.1}}, "tables": ["posts_post"],
        "errors": [], "end": 1.0, "spans": [["posts.0006_remove_post_subtitle", 0.1, 0.2]],
        "writes": [[0.0, 0.01], [0.15, 0.25]]}}
    copy.finish(report, [], done)
    (dropped,) = report["migrations"]
    assert [(u["kind"], u["column"]) for u in dropped["unsafe"]] == [("drop_column", "subtitle")]
    assert dropped["tables"] == [{"name": "posts_post", "rows": 10, "rows_exact": True, "mb": 0.1}]
    assert dropped["max_write_stall"] == 0.1


def test_the_runner_imports_its_neighbour_the_probe_and_only_the_standard_library():
    probe_text, runner_text = hostside.source("rehearsal_probe.py"), hostside.source("rehearsal_runner.py")
    assert probe_text == (Path(rehearsal_copy.__file__).parents[2] / "hostside" / "rehearsal_probe.py").read_text()
    for name in hostside.PROGRAMS:
        compile(hostside.source(name), name, "exec")
    imports = [line for line in probe_text.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["from __future__ import annotations", "import threading", "import time"]
    assert "    import rehearsal_probe\n" in runner_text
    assert runner_argv(split_command("python manage.py migrate"), "rehearse-here")[2] == "rehearse-here"


def test_the_runners_done_line_comes_back_as_data():
    line = '@@doit-stages {"event": "done", "probe": {"writes": [[0.1, 0.2]]}}\n'
    assert MigrateOutput().feed(line) == [("done", {"event": "done", "probe": {"writes": [[0.1, 0.2]]}})]


class _Cursor:
    def execute(self, sql, params=None):
        pass


class _Connection:
    def cursor(self):
        return _Cursor()

    def close(self):
        pass


def test_the_probe_writes_once_more_after_it_is_stopped():
    """A migration shorter than the interval between writes is bounded only by a write sent after it
    ended: stop() makes each table's thread write once more (the CI case: a 25 ms ADD COLUMN, one write)."""
    import time

    from doit_stages.hostside.rehearsal_probe import Probe
    probe = Probe(_Connection, [("posts_post", "UPDATE x", None)], interval=10.0, timeout=5)
    probe.start()
    time.sleep(0.05)
    stopped = time.monotonic()
    probe.stop()
    assert len(probe.writes) == 2 and probe.writes[0][0] < stopped <= probe.writes[1][0], probe.writes
