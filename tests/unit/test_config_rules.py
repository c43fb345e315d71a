"""Values from stages.ini that would reach a command line in option position, a path in the tool's own state,
or a database restore that drops production: each refused at config load, one line naming the key's line.
Plain files in tmp dirs; no host touched."""
from __future__ import annotations

import pytest

from doit_stages.config import load_config, parse_host, rules
from tests.unit.inifile import LOCAL_INI, config_error, in_section, line_of, mysql_servers_ini, set_key, write_ini


# -- 1. ssh options smuggled in through hosts ------------------------------------------------------------
@pytest.mark.parametrize("spec", [
    "ssh://-oProxyCommand=touch${IFS}x@127.0.0.1:22",     # the reproduced attack: user read as an option
    "ssh://-oProxyCommand=x@127.0.0.1",
    "ssh://deploy@-oProxyCommand=touch:22",                # host read as an option
    "ssh://-lroot@web1",
    "ssh://de ploy@web1",
    "ssh://deploy@web1;touch",
    "ssh://dep$(id)loy@web1",
    "ssh://deploy@web`id`",
    "ssh://deploy@web1#frag",
    "ssh://deploy@[::zz]:22",
])
def test_a_host_or_user_that_ssh_could_read_as_an_option_is_refused(tmp_path, spec):
    text = set_key(LOCAL_INI, "stage:staging", "hosts", spec)
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, '^hosts = ssh', 'stage:staging')}: [stage:staging] hosts: ")
    with pytest.raises(ValueError):
        parse_host(spec)


@pytest.mark.parametrize("spec", ["ssh://deploy@web1:22", "ssh://web-1.example.org", "ssh://d_2@10.0.0.1:2222",
                                  "ssh://deploy@[::1]:22", "ssh://deploy.user@web1"])
def test_ordinary_hosts_pass(spec):
    host = parse_host(spec)
    assert not host.hostname.startswith("-") and not (host.user or "").startswith("-")


def test_backup_host_is_checked_the_same_way(tmp_path):
    text = in_section(LOCAL_INI, "database:prod", "backup_host = ssh://-oProxyCommand=x@db1")
    msg = config_error(tmp_path, text)
    assert f":{line_of(text, '^backup_host =')}: [database:prod] backup_host: " in msg


# -- 2. a link that lands in the tool's own state ---------------------------------------------------------
@pytest.mark.parametrize("link", [".deploy/releases.jsonl", ".deploy/lock", "releases/x", "shared/media",
                                  "db_backup/latest", "sites/../.deploy/x", "-x/y", "sites/te st;x", ""])
def test_a_link_into_the_tools_own_state_is_refused(tmp_path, link):
    text = set_key(LOCAL_INI, "stage:test", "link", link)
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, '^link =', 'stage:test')}: [stage:test] link: "), msg


@pytest.mark.parametrize("link", ["sites/test/inner", "sites"])
def test_a_link_inside_or_around_another_stages_link_is_refused(tmp_path, link):
    text = set_key(LOCAL_INI, "stage:staging", "link", link if link != "sites" else "sites/test/x")
    text = set_key(text, "stage:test", "link", "sites/test" if link != "sites" else "sites/test")
    msg = config_error(tmp_path, text)
    assert "overlaps the link" in msg and "[stage:staging] link" in msg


@pytest.mark.parametrize("key, value", [("shared_dirs", ".venv"), ("shared_files", "REVISION"),
                                        ("shared_dirs", ".deploy-ready"), ("stage_dirs", "-rf"),
                                        ("shared_dirs", "media/../../etc")])
def test_shared_names_that_replace_the_tools_files_are_refused(tmp_path, key, value):
    text = in_section(LOCAL_INI, "project", f"{key} = {value}")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, f'^{key} =')}: [project] {key}: "), msg


@pytest.mark.parametrize("root", ["/", "/srv/../etc", "/srv/-x", "/srv/a\tb"])
def test_a_deploy_root_that_is_not_a_plain_absolute_path_is_refused(tmp_path, root):
    text = set_key(LOCAL_INI, "project", "deploy_root", root)
    msg = config_error(tmp_path, text)
    assert "[project] deploy_root: " in msg, msg


@pytest.mark.parametrize("section, key, value", [
    ("stage:test", "settings", "blog.settings;x"),
    ("stage:test", "health_url", "file:///etc/passwd"),
    ("project", "health_url", "http://{host}/ x"),
])
def test_other_values_that_reach_a_command_or_a_request(tmp_path, section, key, value):
    text = set_key(LOCAL_INI, section, key, value) if key == "settings" else \
        in_section(LOCAL_INI, section, f"{key} = {value}")
    msg = config_error(tmp_path, text)
    assert f"[{section}] {key}: " in msg, msg


# -- 3. the test database can be production ----------------------------------------------------------------
@pytest.mark.parametrize("test_host", ["127.0.0.1", "localhost", "LOCALHOST", "127.0.0.2", "::1"])
def test_a_test_database_that_is_production_is_refused(tmp_path, test_host):
    text = mysql_servers_ini(test_host=test_host, test_name="blog_prod")
    msg = config_error(tmp_path, text, {"PW": "x"})
    line = line_of(text, "^name = blog_prod", "database:test")
    assert msg.startswith(f"stages.ini:{line}: [database:test] name: blog_prod on {test_host}:3306 is the same "
                          "database as [database:prod]"), msg
    assert "restore:test would drop it" in msg


def test_same_schema_name_on_another_server_or_port_is_accepted(tmp_path):
    for ini in (mysql_servers_ini(test_name="blog_prod", prod_host="db1.example.org"),
                mysql_servers_ini(test_name="blog_prod", prod_port=3307)):
        load_config(write_ini(tmp_path, ini), environ={"PW": "x"})


def test_a_restore_target_that_another_stage_runs_on_is_refused(tmp_path):
    text = mysql_servers_ini() + "\n[stage:prod]\nhosts = ssh://deploy@web1:22\nsettings = blog.settings.prod\n" \
                         "database = test\npromote_from = staging\n"
    msg = config_error(tmp_path, text, {"PW": "x"})
    assert "[stage:test] database: [database:test] is also the database of stage prod" in msg, msg


def test_a_restore_target_equal_to_another_live_database_is_refused(tmp_path):
    text = mysql_servers_ini() + ("\n[database:other]\nengine = mysql\nhost = localhost\nname = blog_test\nuser = u\n"
                          "password_env = PW\n\n[stage:prod]\nhosts = ssh://deploy@web1:22\n"
                          "settings = blog.settings.prod\ndatabase = other\npromote_from = staging\n")
    msg = config_error(tmp_path, text, {"PW": "x"})
    assert "[database:test] name: blog_test on 127.0.0.1:3306 is the same database as [database:other]" in msg


def test_sqlite_test_database_on_the_production_file_is_refused(tmp_path):
    text = set_key(LOCAL_INI, "database:test", "path", "/srv/blog/db/../db/prod.sqlite3")
    msg = config_error(tmp_path, text)
    assert "[database:test] path: " in msg and "same database as [database:prod]" in msg


@pytest.mark.parametrize("key, value", [("name", "-e"), ("name", "blog`x"), ("user", "-ublog"),
                                        ("user", "blo g"), ("host", "-hevil"), ("host", "db;x")])
def test_database_values_that_reach_the_client(tmp_path, key, value):
    text = set_key(mysql_servers_ini(), "database:prod", key, value)
    msg = config_error(tmp_path, text, {"PW": "x"})
    assert f"[database:prod] {key}: " in msg, msg


@pytest.mark.parametrize("value", ["relative.cnf", "-x", "/etc/../root/.my.cnf", "~/a b/../c"])
def test_a_bad_option_file_is_refused(tmp_path, value):
    text = set_key(mysql_servers_ini(), "database:prod", "password_env", None)
    text = in_section(text, "database:prod", f"option_file = {value}")
    msg = config_error(tmp_path, text, {"PW": "x"})
    assert "[database:prod] option_file: " in msg, msg


# -- the pure rules ------------------------------------------------------------------------------------------
def test_loopback_names_compare_equal():
    assert {rules.canonical_db_host(h) for h in ("localhost", "127.0.0.1", "::1", "127.1.2.3", "Localhost.")} \
        == {"loopback"}
    assert rules.canonical_db_host("DB1.example.org") == "db1.example.org"
    assert rules.canonical_db_host("10.0.0.1") != rules.canonical_db_host("10.0.0.2")


@pytest.mark.parametrize("value", ["media", "static/css", ".env", "a-b_c.d", "v2@x+y"])
def test_plain_relative_paths_pass(value):
    assert rules.relative_path_problem(value) is None
