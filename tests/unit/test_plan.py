"""plan:<stage>'s pure parts (tasks/plan_text.py): the read-only migration command and its parser, the backup and
switch verdicts, the text."""
from __future__ import annotations

from doit_stages.config import Host
from doit_stages.plan_text import (
    Step,
    age_text,
    backup_step,
    format_plan,
    parse_showmigrations,
    showmigrations_argv,
    switch_step,
)

WEB1 = Host("ssh://deploy@web1:22", "web1", "deploy", 22)
WEB2 = Host("ssh://deploy@web2:22", "web2", "deploy", 22)
LABELS = {WEB1: "web1", WEB2: "web2"}
NEW, OLD = "blog-2026-12-06-0930-aaaaaaaaaaaa", "blog-2026-12-01-0800-bbbbbbbbbbbb"


class DB:
    name = "prod"


def test_showmigrations_argv_reads_only_and_keeps_the_options_both_take():
    assert showmigrations_argv(["python", "manage.py", "migrate", "--noinput"]) == [
        "python", "manage.py", "showmigrations", "--plan"]
    assert showmigrations_argv(["bin/django", "migrate", "--settings=blog.s", "--noinput", "--database=x"]) == [
        "bin/django", "showmigrations", "--plan", "--settings=blog.s", "--database=x"]
    assert showmigrations_argv(["python", "manage.py", "showmigrations"]) is None   # not migrate
    assert showmigrations_argv(["./migrate.sh"]) is None


def test_parse_showmigrations_splits_applied_and_pending_in_plan_order():
    text = ("[X]  contenttypes.0001_initial\n[X]  posts.0001_initial\n[ ]  posts.0002_post_slug\n"
            "[ ]  posts.0003_populate_post_slug\nSystem check identified no issues.\n")
    assert parse_showmigrations(text) == (["contenttypes.0001_initial", "posts.0001_initial"],
                                           ["posts.0002_post_slug", "posts.0003_populate_post_slug"])
    assert parse_showmigrations("") == ([], [])


def test_age_text():
    assert [age_text(s) for s in (5, 300, 7200 * 2, 86400 * 3)] == ["5s", "5m", "4h", "3d"]


def test_backup_step_by_the_newest_verified_backup_and_backup_max_age():
    now, day = 1_000_000.0, 86400
    young = {"name": "blog-prod-1", "epoch": now - 3600}
    old = {"name": "blog-prod-0", "epoch": now - 2 * day}
    assert backup_step("backup:prod", DB, WEB1, young, now, day).done is True
    stale = backup_step("backup:prod", DB, WEB1, old, now, day)
    assert stale.done is False and "blog-prod-0, is 2d old (backup_max_age 24h)" in stale.says
    none = backup_step("backup:prod", DB, WEB1, None, now, day)
    assert none.done is False and "no verified backup" in none.says


def state(link=None, env="e1", live="e1", intent=None, unsafe=None):
    return {"link": link, "env": env, "env_live": live, "intent": intent, "unsafe": unsafe}


def test_switch_step_names_each_hosts_move():
    done = switch_step("switch:test", "sites/test", NEW, {WEB1: state(f"../releases/{NEW}"),
                                                          WEB2: state(f"../releases/{NEW}")}, LABELS)
    assert done.done is True and done.says == f"up to date: sites/test -> {NEW} on every host"
    moves = switch_step("switch:test", "sites/test", NEW, {WEB1: state(f"../releases/{OLD}"), WEB2: state()}, LABELS)
    assert moves.done is False
    assert moves.says == f"would switch sites/test: web1 {OLD} -> {NEW}; web2 (none) -> {NEW}"
    env = switch_step("switch:test", "sites/test", NEW, {WEB1: state(f"../releases/{NEW}", live="e0")}, LABELS)
    assert env.done is False and "new env version goes live" in env.says
    intent = switch_step("switch:test", "sites/test", NEW, {WEB1: state(f"../releases/{NEW}",
                                                                        intent={"release": NEW})}, LABELS)
    assert intent.done is False and "unfinished switch" in intent.details[0]


def test_format_plan_aligns_nodes_indents_details_and_counts():
    text = format_plan("plan:test: deploy:test with X", [
        Step("archive", True, "up to date: build/X.tar.gz"),
        Step("migrate:test", False, "would rehearse 1 pending migration(s)", ("table\nrow",)),
        Step("switch:test", None, "not checked: web1: connection refused"),
    ])
    assert text.splitlines() == [
        "plan:test: deploy:test with X",
        "  archive       up to date: build/X.tar.gz",
        "  migrate:test  would rehearse 1 pending migration(s)",
        "                  table",
        "                  row",
        "  switch:test   not checked: web1: connection refused",
        "1 node(s) would act, 1 up to date, 1 not checked; nothing was changed",
    ]


def test_only_a_command_of_plans_keeps_doits_memory_in_memory():
    from types import SimpleNamespace

    from doit_stages.start import databases_needed, only_plans
    assert only_plans(["doit", "plan:test"]) and only_plans(["doit", "-v", "2", "plan:test", "plan:staging"])
    assert not only_plans(["doit", "plan:test", "deploy:test"]) and not only_plans(["doit", "list"])
    stage = SimpleNamespace(database="test", restore_from="prod")
    config = SimpleNamespace(stages={"test": stage}, databases={})
    assert databases_needed(config, ["plan:test"]) == [] and databases_needed(config, ["build:test"])


def test_host_failure_names_the_host_once():
    from doit_stages.errors import StepError
    from doit_stages.plan_text import host_failure
    assert host_failure("web1", WEB1, StepError(f"{WEB1}: cannot reach the host")) == "web1: cannot reach the host"
    assert host_failure("web1", WEB1, StepError("python3 is not on the host's PATH\nmore")) == \
        "web1: python3 is not on the host's PATH"
