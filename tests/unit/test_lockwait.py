"""The pure parts of a migration's bounded lock wait: the runner's report read into the connections that hold
the lock up (tasks/steps/migration/lockwait.py) on canned reports as MariaDB gives them, the runner's argv, and the
[database:<name>] keys migration_lock_timeout and migration_lock_retries."""
from __future__ import annotations

import json

import pytest

from doit_stages.config import ConfigError, load_config, split_command
from doit_stages.steps.migration.lockwait import blockers, describe, failure_line, lock_event, processes, retry_line
from doit_stages.steps.migration.migrate_bounded import bounded_argv
from tests.lab.stages_ini import LOCAL, stages_ini

MARK = "@@doit-stages "
# as the runner printed it on MariaDB 10.11, the holder (867) idle in a transaction; 868 another database's
# ALTER, 870 a query queued behind the migration's ALTER; the migration's own session is 872
EVENT = {"event": "lock_timeout", "seconds": 1, "sql": "ALTER TABLE `posts_post` ADD COLUMN `extra` varchar(20) NULL",
         "me": 872, "db": "blog_prod", "user": "blog@%",
         "processes": [[868, "other", "127.0.0.1:45026", "other_db", "Query", 3, "Enabling keys", "ALTER"],
                       [867, "blog", "10.0.0.7:45912", "blog_prod", "Sleep", 4, "", ""],
                       [870, "blog", "10.0.0.8:40000", "blog_prod", "Query", 1, "Waiting for table metadata lock",
                        "SELECT"],
                       [869, "blog", "10.0.0.9:40100", "blog_prod", "Sleep", 1, "", ""],
                       [2, "system user", "", None, "Daemon", None, "InnoDB purge coordinator", ""]],
         "transactions": [[868, 4], [867, 5]], "metadata_locks": None}
OUT = ("Operations to perform:\n  Apply all migrations: posts\nRunning migrations:\n  Applying posts.0004_rehearsed... "
       "OK\n  Applying posts.0005_extra...\n" + MARK + json.dumps(EVENT) + "\n")


def event(**changes) -> dict:
    return {**EVENT, **changes}


def test_lock_event_is_read_from_the_runners_output_and_nothing_else_is():
    assert lock_event(OUT) == EVENT
    glued = OUT.replace("0005_extra...\n", "0005_extra...")  # the mark right after Django's unfinished line
    assert lock_event(glued) == EVENT
    assert lock_event("  Applying posts.0005_extra... OK\n") is None
    assert lock_event(MARK + '{"event": "plan"}\n') is None
    assert lock_event(MARK + "{not json\n") is None


def test_processes_leave_out_the_migration_its_queue_and_the_servers_threads():
    assert [c.id for c in processes(EVENT)] == [868, 867, 869]


def test_with_the_process_privilege_the_open_transaction_on_this_database_is_named():
    found, how = blockers(EVENT, ["posts_post"])
    assert how == "transactions" and [c.id for c in found] == [867]
    assert found[0].open_for == 5
    assert describe(found[0]) == ("connection 867 (blog@10.0.0.7:45912, db blog_prod, idle 4 s, in a transaction "
                                  "open 5 s)")


def test_metadata_locks_when_the_server_has_them_beat_transactions():
    mdl = [[869, "blog_prod", "posts_post"], [867, "blog_prod", "posts_comment"], [872, "blog_prod", "posts_post"]]
    found, how = blockers(event(metadata_locks=mdl), ["posts_post"])
    assert how == "locks" and [c.id for c in found] == [869]
    # locks on other tables only: the next source answers
    found, how = blockers(event(metadata_locks=[[867, "blog_prod", "posts_comment"]]), ["posts_post"])
    assert how == "transactions"


def test_without_the_process_privilege_the_users_idle_connections_are_a_guess_longest_idle_first():
    found, how = blockers(event(transactions=None), ["posts_post"])
    assert how == "guess" and [c.id for c in found] == [867, 869]
    assert "maybe in an open transaction" in describe(found[0])


def test_the_failure_is_one_line_naming_migration_table_blocker_and_what_stays_applied():
    line = failure_line("staging", "prod", EVENT, OUT, 3)
    assert "\n" not in line and line.startswith("migrate:staging: posts.0005_extra gave up waiting for a lock on "
                                                "posts_post 3 times, 1 s each ([database:prod] migration_lock_timeout")
    assert "connection 867 (blog@10.0.0.7:45912" in line and "KILL 867" in line
    assert "cannot roll back DDL" in line
    guess = failure_line("staging", "prod", event(transactions=None), OUT, 1)
    assert "1 time, " in guess and "probably held up by connection 867" in guess and "PROCESS privilege" in guess
    blind = failure_line("staging", "prod", event(transactions=None, processes=[]), "", 2)
    assert blind.startswith("migrate:staging: the migration gave up") and "cannot see" in blind
    untouched = failure_line("staging", "prod", EVENT, OUT, 3, changed=False)
    assert untouched.endswith("Nothing was applied (no attempt got past its first change)")
    assert "cannot roll back DDL" not in untouched and "KILL 867" in untouched
    begun = failure_line("staging", "prod", event(unrecorded=2), OUT, 1, partial=True)
    assert "gave up waiting for a lock on posts_post 1 time, 1 s each" in begun and "KILL 867" in begun
    assert begun.endswith("Not tried again: posts.0005_extra had made 2 change(s) before it waited, which a second "
                          "attempt would repeat; they stay applied (MySQL and MariaDB cannot roll back DDL)"), begun


def test_a_running_query_is_named_by_its_first_word_only():
    running = event(processes=[[867, "blog", "h:1", "blog_prod", "Query", 30, "Sending data", "SELECT"]],
                    transactions=[[867, 31]])
    found, _ = blockers(running, ["posts_post"])
    assert describe(found[0]) == ("connection 867 (blog@h:1, db blog_prod, running SELECT for 30 s (Sending data), "
                                  "in a transaction open 31 s)")


def test_retry_line():
    assert retry_line("staging", EVENT, OUT, 1, 3) == (
        "migrate:staging: posts.0005_extra waited 1 s for a lock on posts_post (attempt 1 of 3); trying again in 1 s")


@pytest.mark.parametrize("command, head", [
    ("python manage.py migrate --noinput", ["python"]),
    ("./manage.py migrate", ["python3"]),
    ("python -W ignore manage.py migrate --database=other", ["python", "-W", "ignore"]),
    ("bin/py manage.py migrate", ["bin/py"]),    # a zc.recipe.egg interpreter script: a file, never -c
])
def test_bounded_argv_wraps_manage_py_migrate(command, head):
    argv = bounded_argv(split_command(command), 7, "/srv/b/.deploy/programs/x")
    rest = command.split()[[i for i, a in enumerate(command.split()) if a.endswith("manage.py")][0]:]
    assert argv[:len(head)] == head and argv[len(head)] == "/srv/b/.deploy/programs/x/migrate_runner.py"
    assert argv[len(head) + 1:] == ["7", *rest] and "-c" not in argv


@pytest.mark.parametrize("command", ["bin/django migrate", "python manage.py showmigrations", "make migrate"])
def test_other_commands_are_run_as_they_are(command):
    assert bounded_argv(split_command(command), 7) is None


# production on MariaDB, its keys after `{extra}`; one stage on this machine
INI = stages_ini(LOCAL, {"project": {"deploy_root": None},
                         "database:prod": {"host": None, "port": None, "name": "blog_prod", "user": "blog",
                                           "password_env": "PW", "+": "{extra}"},
                         "database:test": None, "stage:test": None, "stage:staging": {"promote_from": None}})


def load(tmp_path, extra=""):
    (tmp_path / "stages.ini").write_text(INI.format(extra=extra))
    return load_config(tmp_path / "stages.ini", environ={"PW": "x"})


def test_lock_keys_default_and_parse(tmp_path):
    db = load(tmp_path).databases["prod"]
    assert (db.migration_lock_timeout, db.migration_lock_retries) == (10, 3)
    db = load(tmp_path, "migration_lock_timeout = 2m\nmigration_lock_retries = 0\n").databases["prod"]
    assert (db.migration_lock_timeout, db.migration_lock_retries) == (120, 0)


@pytest.mark.parametrize("extra, says", [
    ("migration_lock_timeout = 0", "[database:prod] migration_lock_timeout: '0' is not between 1s and 365d"),
    ("migration_lock_timeout = 400d", "is not between 1s and 365d"),
    ("migration_lock_timeout = soon", "[database:prod] migration_lock_timeout: 'soon' is not a duration"),
    ("migration_lock_retries = -1", "[database:prod] migration_lock_retries: '-1' is not a whole number"),
    ("migration_lock_retries = 101", "101 is more than 100"),
])
def test_bad_lock_keys_are_one_line_naming_the_key(tmp_path, extra, says):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra + "\n")
    assert says in str(info.value) and "\n" not in str(info.value) and str(info.value).startswith("stages.ini:")


def test_lock_keys_are_refused_for_sqlite(tmp_path):
    (tmp_path / "stages.ini").write_text(INI.format(extra="").replace(
        "engine = mysql\nname = blog_prod\nuser = blog\npassword_env = PW\n",
        "engine = sqlite\npath = /srv/x.sqlite3\nmigration_lock_retries = 2\n"))
    with pytest.raises(ConfigError, match=r"\[database:prod\] migration_lock_retries: not used with engine = sqlite"):
        load_config(tmp_path / "stages.ini", environ={})


# -- PostgreSQL -------------------------------------------------------------------------------------------
# as the runner reports it on PostgreSQL 15: 4711 (psql) holds ACCESS EXCLUSIVE on posts_post in a
# transaction open 12 s; 4712 the app, idle; 4799 a session of another role the migration's cannot see
PG_EVENT = {"event": "lock_timeout", "server": "postgresql", "seconds": 1,
            "sql": 'ALTER TABLE "posts_post" ADD COLUMN "held_up" varchar(20) NULL', "changes": 0, "unrecorded": 0,
            "transactional": True, "me": 4720, "db": "blog_prod", "user": "blog",
            "sessions": [[4711, "blog", "psql", "127.0.0.1/32", "idle in transaction", 11, 12, "LOCK"],
                         [4712, "blog", "", "10.0.0.8/32", "idle", 30, None, "SELECT"],
                         [4799, "", "", "local", "", None, None, ""]],
            "locks": [[4711, "posts_post", "AccessExclusiveLock"], [4712, "posts_comment", "AccessShareLock"],
                      [4720, "posts_post", "AccessShareLock"]]}
PG_OUT = "Running migrations:\n  Applying posts.0005_held_up...\n" + MARK + json.dumps(PG_EVENT) + "\n"


def test_pg_the_session_holding_the_tables_lock_is_named_by_pid_and_application():
    line = failure_line("staging", "prod", PG_EVENT, PG_OUT, 3, changed=False)
    assert line == (
        "migrate:staging: posts.0005_held_up gave up waiting for a lock on posts_post 3 times, 1 s each "
        "([database:prod] migration_lock_timeout, migration_lock_retries): held by pid 4711 (user blog, application "
        "'psql', 127.0.0.1/32; idle in transaction for 11 s, in a transaction open 12 s, holding AccessExclusiveLock)"
        "; end that transaction (or SELECT pg_terminate_backend(4711)) and run again. Nothing of posts.0005_held_up "
        "was applied (PostgreSQL runs each migration in a transaction)")
    earlier = failure_line("staging", "prod", {**PG_EVENT, "changes": 2}, PG_OUT, 3, changed=True)
    assert earlier.endswith("Nothing of posts.0005_held_up was applied (PostgreSQL runs each migration in a "
                            "transaction); the migrations before it stay applied and recorded")


def test_pg_without_a_lock_on_the_table_the_open_transactions_are_the_guess():
    no_locks = {**PG_EVENT, "locks": [[4712, "posts_comment", "AccessShareLock"]]}
    line = failure_line("staging", "prod", no_locks, PG_OUT, 1, changed=False)
    assert ": probably held up by pid 4711 (user blog, application 'psql'" in line
    assert "pid 4712" not in line and "pid 4799" not in line
    hidden = {**PG_EVENT, "locks": [[4799, "posts_post", "AccessExclusiveLock"]]}
    assert "held by pid 4799 (not shown to this role; holding AccessExclusiveLock)" in failure_line(
        "staging", "prod", hidden, PG_OUT, 1, changed=False)
    nobody = {**PG_EVENT, "locks": [], "sessions": []}
    assert "held up by a session that blog cannot see; find it in pg_locks and pg_stat_activity" in failure_line(
        "staging", "prod", nobody, PG_OUT, 1, changed=False)


def test_pg_a_migration_outside_a_transaction_that_changed_something_is_not_tried_again():
    event = {**PG_EVENT, "transactional": False, "unrecorded": 1}
    line = failure_line("staging", "prod", event, PG_OUT, 1, changed=True, partial=True)
    assert line.endswith("Not tried again: posts.0005_held_up runs outside a transaction (atomic = False) and had "
                         "made 1 change(s) before it waited, which a second attempt would repeat; they stay applied")
