"""The pure parts of the operator commands (tasks/steps/operate.py, start.command_after): which hosts
DEPLOY_HOSTS names, the prefix of each host's lines, the exit status of many, the argv sent to a host."""
from __future__ import annotations

import pytest

from doit_stages.config import Host, Stage, parse_host
from doit_stages.errors import StepError
from doit_stages.layout import Layout
from doit_stages.start import command_after, databases_needed, task_words
from doit_stages.steps.operate import (
    console_argv,
    host_labels,
    log_argv,
    prefixed,
    run_argv,
    select_hosts,
    ssh_console,
    worst,
)

WEB1, WEB2, WEB3 = (parse_host(f"ssh://deploy@web{i}:22") for i in (1, 2, 3))
LAB = tuple(parse_host(f"ssh://deploy@127.0.0.1:{p}") for p in (2201, 2202))


def stage(*hosts: Host, **kw) -> Stage:
    return Stage(name="prod", hosts=hosts, link="sites/current", **kw)


def test_unset_or_empty_deploy_hosts_is_the_primary_for_run_and_every_host_for_logs():
    s = stage(WEB1, WEB2, WEB3)
    assert select_hosts(s, None, "run:prod", every=False) == (WEB1,)
    assert select_hosts(s, "  ", "run:prod", every=False) == (WEB1,)
    assert select_hosts(s, None, "logs:prod", every=True) == (WEB1, WEB2, WEB3)
    assert select_hosts(s, "all", "run:prod", every=False) == (WEB1, WEB2, WEB3)
    assert select_hosts(stage(WEB1, WEB2, WEB3, primary=WEB3), None, "console:prod", every=False) == (WEB3,)


def test_deploy_hosts_names_hosts_as_written_or_shorter_and_keeps_the_stage_order():
    s = stage(WEB1, WEB2, WEB3)
    assert select_hosts(s, "web3, ssh://deploy@web1:22", "run:prod", every=False) == (WEB1, WEB3)
    assert select_hosts(s, "deploy@web2:22,web2", "run:prod", every=False) == (WEB2,)
    assert select_hosts(stage(*LAB), "127.0.0.1:2202", "run:prod", every=False) == (LAB[1],)
    assert select_hosts(stage(Host("local")), "local", "run:prod", every=False) == (Host("local"),)


def test_a_name_that_is_no_host_or_two_is_one_line_naming_the_stage_hosts():
    with pytest.raises(StepError) as e:
        select_hosts(stage(WEB1, WEB2), "web1,web9", "run:prod", every=False)
    assert str(e.value) == ("run:prod: DEPLOY_HOSTS names 'web9', which is no host of stage prod (its hosts: "
                            "ssh://deploy@web1:22, ssh://deploy@web2:22); write all, or some of those, comma-separated")
    with pytest.raises(StepError, match=r"names '127.0.0.1', which is 2 hosts of stage prod .*write each as"):
        select_hosts(stage(*LAB), "127.0.0.1", "logs:prod", every=True)


def test_labels_are_the_shortest_form_that_tells_the_hosts_apart():
    assert host_labels((WEB1, WEB2)) == {WEB1: "web1", WEB2: "web2"}
    assert host_labels(LAB) == {LAB[0]: "127.0.0.1:2201", LAB[1]: "127.0.0.1:2202"}
    other = parse_host("ssh://admin@127.0.0.1:2201")
    assert host_labels((LAB[0], other)) == {LAB[0]: "deploy@127.0.0.1:2201", other: "admin@127.0.0.1:2201"}
    assert host_labels((Host("local"),)) == {Host("local"): "local"}
    assert prefixed("web1", "  Applying posts.0001... OK") == "[web1]   Applying posts.0001... OK"


def test_the_worst_exit_status_wins_and_a_signal_counts_as_a_shell_says():
    assert worst([0, 0]) == 0 and worst([]) == 0
    assert worst([0, 3, 1]) == 3
    assert worst([0, -15]) == 143   # killed by SIGTERM (subprocess's -15)
    assert worst([255, 2]) == 255   # a host ssh could not reach


def test_the_argv_sent_holds_the_command_and_paths_never_an_env_value():
    layout = Layout("/srv/blog")
    s = stage(WEB1, settings="blog.settings.prod", database="prod", log_command="tail -F shared/log/app.log",
              console_command="python manage.py shell -i python")
    argv = run_argv(layout, s, "blog-1", ["python", "manage.py", "check"])
    assert argv[:4] == ["sh", "-c", 'exec "$@" </dev/null', "sh"]
    assert argv[-3:] == ["python", "manage.py", "check"]
    assert "/srv/blog/releases/blog-1" in argv and "/srv/blog/releases/blog-1/.deploy-env/prod.env" in argv
    assert not any("DATABASE_URL" in a or "mysql://" in a for a in argv)
    assert console_argv(layout, s, "blog-1")[-4:] == ["manage.py", "shell", "-i", "python"]
    assert log_argv(layout, s) == ["sh", "-c", 'cd "$1" || exit 97; shift; exec "$@" </dev/null', "sh", "/srv/blog",
                                   "tail", "-F", "shared/log/app.log"]


def test_the_console_ssh_asks_for_a_terminal_only_when_there_is_one():
    opts = ["-F", "/x/ssh_config", "-o", "BatchMode=yes"]
    with_tty = ssh_console(WEB1, opts, ["python", "manage.py", "shell"], tty=True)
    assert with_tty == ["ssh", *opts, "-t", "-l", "deploy", "-p", "22", "--", "web1", "python manage.py shell"]
    assert ssh_console(WEB1, opts, ["echo", "a b"], tty=False)[len(opts) + 1:] == [
        "-T", "-l", "deploy", "-p", "22", "--", "web1", "echo 'a b'"]


def test_the_command_after_run_is_taken_as_typed_and_is_no_task_name():
    argv = ["doit", "-f", "dodo.py", "run:test", "sh", "-c", "echo a=$STAGE", "upload", "--", "-x"]
    assert task_words(argv) == ["run:test"]
    assert command_after(argv, "run:test") == ["sh", "-c", "echo a=$STAGE", "upload", "--", "-x"]
    assert command_after(["doit", "run:test", "--", "ls", "-la"], "run:test") == ["ls", "-la"]
    assert command_after(["doit", "-v", "2", "run:test"], "run:test") == []
    assert command_after(["doit", "status"], "run:test") == []


def test_operator_commands_need_no_database_password(tmp_path):
    from doit_stages.config import load_config
    from tests.lab.stages_ini import LOCAL_INI
    ini = tmp_path / "stages.ini"
    ini.write_text(LOCAL_INI)
    config = load_config(ini)
    assert databases_needed(config, ["run:test", "console:staging", "logs:test"]) == []
    # deploy:test after run:test is the command run:test runs, not a task of this doit
    assert databases_needed(config, task_words(["doit", "run:test", "deploy:test"])) == []
    assert databases_needed(config, task_words(["doit", "deploy:test", "run:test", "x"])) == ["test", "prod"]


def test_the_hosts_a_command_reaches_first_are_its_stages_and_their_databases_backup_hosts(tmp_path):
    """start.this_run logs in to these while doit starts (Connections.early): the named stages' hosts, the
    backup hosts of their databases and of a named database; nothing for an unknown name or a look-only
    command (whose task words are none of these)."""
    from doit_stages.config import load_config
    from doit_stages.start import hosts_needed
    from tests.unit.inifile import in_section, mysql_servers_ini, set_key, write_ini
    text = set_key(mysql_servers_ini(), "stage:test", "hosts", "ssh://deploy@web2:22, ssh://deploy@web3:22")
    text = in_section(text, "database:prod", "backup_host = ssh://deploy@db9:22")
    config = load_config(write_ini(tmp_path, text))
    web1, web2, web3, db9 = (parse_host(f"ssh://deploy@{n}:22") for n in ("web1", "web2", "web3", "db9"))
    assert config.databases["test"].backup_host == web2      # the test stage's first host
    assert hosts_needed(config, ["deploy:test"]) == [web2, web3, db9]      # test's, prod's (restore_from)
    assert hosts_needed(config, ["promote:staging"]) == [web1, db9]
    assert hosts_needed(config, ["backup:prod"]) == [db9]
    assert hosts_needed(config, ["backup:test"]) == [web2]          # the database, not a stage of that name
    assert hosts_needed(config, task_words(["doit", "run:staging", "deploy:test"])) == [web1]
    assert hosts_needed(config, ["nosuch:thing", "backup:nosuch"]) == []
