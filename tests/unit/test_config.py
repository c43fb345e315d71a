"""tasks/config/__init__.py: stages.ini -> frozen dataclasses, and every mistake refused with a one-line message that
names the file's line, the section and key, and what to change. Plain files in tmp dirs; no host touched."""
from __future__ import annotations

import re
import sys

import pytest

from doit_stages.config import ConfigError, Host, load_config, parse_duration, parse_host
from tests.unit.inifile import LOCAL_INI, config_error, header, in_section, line_of, mysql_ini, set_key, write_ini

# The design's example stages.ini, verbatim (inline ' ;' comments and all); its keys: docs/configuration.md.
DESIGN_INI = """\
[project]
name = blog                  ; letters, digits, '-', '_': used in release ids and backup names
source = ../blog             ; the app's repository, git or hg; relative to this file
scm = auto                   ; auto | git | hg
revision = main              ; optional default revision
deploy_root = /srv/blog      ; on every host: releases/ sites/ shared/ db_backup/ .deploy/
build = pip                  ; pip | buildout | command | none  (pip: venv in the release from a wheelhouse built once)
build_command =              ; run inside the release after the build (the whole build for build = command),
                             ; e.g. python manage.py collectstatic --noinput
migrate_command = python manage.py migrate --noinput
reload_command =             ; optional, run on each host after a switch (e.g. systemctl reload gunicorn)
health_url =                 ; optional, per stage too; {host} is the host's address
keep_releases = 5
keep_backups = 10
backup_max_age = 24h         ; deploy:test takes a fresh prod backup when the newest is older
ssh_config =                 ; optional OpenSSH config file (relative to this file), passed as ssh -F
parallel = 10                ; hosts worked on at once within a node
artifact_store = push        ; push | s3://bucket/prefix | /shared/path
s3_endpoint =                ; for S3-compatible stores other than AWS
shared_dirs = media          ; kept under shared/, linked into every release
shared_files =               ; likewise, files (a missing one stops the run before any switch)
stage_dirs = cache           ; per stage under shared/<stage>/, exported as STAGE_DIR, emptied by a promotion
health_timeout = 30s

[database:prod]
engine = mysql               ; mysql | sqlite (sqlite: path = <file on the backup host>, no host/user/password)
host = 127.0.0.1
port = 3306
name = blog_prod
user = blog
password_env = BLOG_PROD_DB_PASSWORD   ; or option_file = ~/.my.cnf on the host; never a password here
backup_host = ssh://deploy@db1:22      ; where mysqldump runs and db_backup/ lives; default: first prod host
restore_on_failed_migration = no       ; yes: restore the pre-migration backup by itself

[database:test]
engine = mysql
host = 127.0.0.1
name = blog_test
user = blog
password_env = BLOG_TEST_DB_PASSWORD

[stage:test]
hosts = ssh://deploy@web1:22         ; comma-separated; 'local' for this machine
link = sites/test
settings = blog.settings.test
database = test
restore_from = prod

[stage:staging]
hosts = ssh://deploy@web1:22
link = sites/staging
settings = blog.settings.prod
database = prod
promote_from = test

[stage:prod]
hosts = ssh://deploy@web1:22, ssh://deploy@web2:22
link = sites/current
settings = blog.settings.prod
database = prod
promote_from = staging
health_url = http://{host}:8000/health/
batch = 100%                 ; rolling switch: hosts per batch, a number or a share
max_fail = 0
"""

DESIGN_ENV = {"BLOG_PROD_DB_PASSWORD": "prod-secret", "BLOG_TEST_DB_PASSWORD": "test-secret"}

# -- a good file ------------------------------------------------------------------------------------
def test_design_ini_parses_into_the_dataclasses(tmp_path):
    cfg = load_config(write_ini(tmp_path, DESIGN_INI), environ=DESIGN_ENV)
    conf = tmp_path / "conf"
    p = cfg.project
    assert cfg.path == conf / "stages.ini"
    assert cfg.workdir == conf and cfg.build_dir == conf / "build"
    assert p.name == "blog"
    assert p.source == (tmp_path / "blog").resolve()          # ../blog, relative to the ini, not the cwd
    assert (p.scm, p.revision, p.deploy_root, p.build) == ("auto", "main", "/srv/blog", "pip")
    # an empty value followed by a comment-only continuation line stays empty
    assert (p.build_command, p.reload_command, p.health_url, p.s3_endpoint) == ("", "", "", "")
    assert p.migrate_command == "python manage.py migrate --noinput"
    assert (p.keep_releases, p.keep_backups, p.parallel) == (5, 10, 10)
    assert p.backup_max_age == 24 * 3600 and p.health_timeout == 30
    assert p.ssh_config is None and p.artifact_store == "push"
    assert (p.shared_dirs, p.shared_files, p.stage_dirs) == (("media",), (), ("cache",))

    prod, test = cfg.databases["prod"], cfg.databases["test"]
    assert (prod.engine, prod.host, prod.port, prod.dbname, prod.user) == ("mysql", "127.0.0.1", 3306, "blog_prod",
                                                                          "blog")
    assert prod.password_env == "BLOG_PROD_DB_PASSWORD" and prod.option_file == ""
    assert prod.backup_host == Host("ssh://deploy@db1:22", "db1", "deploy", 22)
    assert prod.restore_on_failed_migration is False
    assert (test.dbname, test.password_env) == ("blog_test", "BLOG_TEST_DB_PASSWORD")
    # no backup_host: the first host of the first stage using the database
    assert test.backup_host == Host("ssh://deploy@web1:22", "web1", "deploy", 22)

    assert list(cfg.stages) == ["test", "staging", "prod"]
    st, sg, pr = cfg.stages["test"], cfg.stages["staging"], cfg.stages["prod"]
    assert st.hosts == (Host("ssh://deploy@web1:22", "web1", "deploy", 22),)
    assert pr.hosts == (Host("ssh://deploy@web1:22", "web1", "deploy", 22),
                        Host("ssh://deploy@web2:22", "web2", "deploy", 22))
    assert (st.link, sg.link, pr.link) == ("sites/test", "sites/staging", "sites/current")
    assert (st.settings, sg.settings) == ("blog.settings.test", "blog.settings.prod")
    assert (st.database, st.restore_from, st.promote_from) == ("test", "prod", None)
    assert (sg.database, sg.restore_from, sg.promote_from) == ("prod", None, "test")
    assert (pr.promote_from, pr.health_url, pr.batch, pr.max_fail) == ("staging", "http://{host}:8000/health/",
                                                                       "100%", 0)
    assert st.health_url == "" and pr.health_timeout == 30
    assert cfg.stage_database(sg) is prod


def test_the_result_is_frozen(tmp_path):
    cfg = load_config(write_ini(tmp_path, DESIGN_INI), environ=DESIGN_ENV)
    with pytest.raises(AttributeError):
        cfg.project.name = "other"  # type: ignore[misc]


def test_backup_host_defaults_to_first_host_of_first_stage_using_the_database(tmp_path):
    text = set_key(DESIGN_INI, "database:prod", "backup_host", None)
    text = set_key(text, "stage:staging", "hosts", "ssh://deploy@web3:2222, ssh://deploy@web4")
    cfg = load_config(write_ini(tmp_path, text), environ=DESIGN_ENV)
    # staging is the first stage (in file order) with database = prod; prod's own hosts come later
    assert cfg.databases["prod"].backup_host == Host("ssh://deploy@web3:2222", "web3", "deploy", 2222)


def test_database_used_by_no_stage_has_no_backup_host(tmp_path):
    text = LOCAL_INI + "\n[database:spare]\nengine = sqlite\npath = /srv/blog/db/spare.sqlite3\n"
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert cfg.databases["spare"].backup_host is None
    assert cfg.databases["test"].backup_host == Host("local")


@pytest.mark.parametrize("written, seconds", [("24h", 86400), ("30s", 30), ("15m", 900), ("2d", 172800),
                                              ("45", 45), ("0s", 0)])
def test_durations(tmp_path, written, seconds):
    text = in_section(LOCAL_INI, "project", f"backup_max_age = {written}\nhealth_timeout = {written}")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert cfg.project.backup_max_age == seconds
    assert cfg.project.health_timeout == seconds == cfg.stages["test"].health_timeout
    assert parse_duration(written) == seconds


def test_lists_and_relative_paths_resolved_against_the_ini(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # the cwd must not matter
    text = in_section(LOCAL_INI, "project", "shared_dirs = media , uploads,, static/files\n"
                                            "shared_files = config/local.py\nstage_dirs = cache,tmp\n"
                                            "ssh_config = ssh/config   ; relative to this file")
    text = set_key(text, "project", "deploy_root", ".demo/srv")
    text = set_key(text, "database:test", "path", "db/test.sqlite3")
    text = set_key(text, "stage:test", "hosts", " local , ")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    conf = (tmp_path / "conf").resolve()
    p = cfg.project
    assert p.shared_dirs == ("media", "uploads", "static/files")
    assert p.shared_files == ("config/local.py",) and p.stage_dirs == ("cache", "tmp")
    assert p.ssh_config == conf / "ssh" / "config"
    assert p.source == tmp_path.resolve() / "blog"
    # every host is local, so relative deploy_root and sqlite paths are allowed, made absolute
    assert p.deploy_root == str(conf / ".demo" / "srv")
    assert cfg.databases["test"].path == str(conf / "db" / "test.sqlite3")
    assert cfg.databases["prod"].path == "/srv/blog/db/prod.sqlite3"
    assert cfg.stages["test"].hosts == (Host("local"),)


def test_stage_inherits_project_health_and_reload(tmp_path):
    text = in_section(LOCAL_INI, "project", "health_url = http://{host}/ok\nreload_command = touch x\n"
                                            "health_timeout = 1m")
    text = in_section(text, "stage:staging", "health_url = http://{host}:9/h\nhealth_timeout = 5s")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    st, sg = cfg.stages["test"], cfg.stages["staging"]
    assert (st.health_url, st.health_timeout, st.reload_command) == ("http://{host}/ok", 60, "touch x")
    assert (sg.health_url, sg.health_timeout, sg.reload_command) == ("http://{host}:9/h", 5, "touch x")


@pytest.mark.parametrize("spec, host", [
    ("local", Host("local")),
    ("ssh://web1", Host("ssh://web1", "web1", None, None)),
    ("ssh://deploy@web1", Host("ssh://deploy@web1", "web1", "deploy", None)),
    ("ssh://deploy@10.0.0.7:2222", Host("ssh://deploy@10.0.0.7:2222", "10.0.0.7", "deploy", 2222)),
])
def test_good_hosts(spec, host):
    assert parse_host(spec) == host
    assert parse_host(spec).address == ("127.0.0.1" if spec == "local" else host.hostname)


def test_password_env_set_in_the_given_environ_is_accepted(tmp_path):
    cfg = load_config(write_ini(tmp_path, DESIGN_INI), environ=DESIGN_ENV)
    assert cfg.databases["prod"].password_env == "BLOG_PROD_DB_PASSWORD"
    # the password itself is never stored in the config
    assert "prod-secret" not in repr(cfg)


# -- every mistake: one line, naming the line, section and key, and what to do ----------------------------
def test_unknown_section(tmp_path):
    text = LOCAL_INI + "\n[stages:prod]\nhosts = local\n"
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{header(text, 'stages:prod')}: [stages:prod]:")
    assert "unknown section" in msg and "[stage:<name>]" in msg


def test_unknown_section_name_with_a_dot(tmp_path):
    text = LOCAL_INI + "\n[stage:pro.d]\nhosts = local\n"
    msg = config_error(tmp_path, text)
    assert f":{header(text, 'stage:pro.d')}: [stage:pro.d]: unknown section" in msg


@pytest.mark.parametrize("section", ["project", "database:test", "stage:staging"])
def test_unknown_key_with_its_line(tmp_path, section):
    text = in_section(LOCAL_INI, section, "colour = blue   ; not a key")
    msg = config_error(tmp_path, text)
    line = line_of(text, r"^colour =")
    assert msg.startswith(f"stages.ini:{line}: [{section}] colour: unknown key; known keys: "), msg


def test_unknown_key_typo_names_the_known_ones(tmp_path):
    text = in_section(LOCAL_INI, "project", "keep_release = 3")
    msg = config_error(tmp_path, text)
    assert f"stages.ini:{line_of(text, '^keep_release =')}: [project] keep_release: unknown key" in msg
    assert "keep_releases" in msg


def test_duplicate_key_is_a_syntax_error_naming_it(tmp_path):
    text = in_section(LOCAL_INI, "stage:test", "hosts = ssh://web9")
    msg = config_error(tmp_path, text)
    assert "hosts" in msg and f"line {line_of(text, 'ssh://web9')}" in msg and "fix the syntax" in msg


@pytest.mark.parametrize("key, hint", [("name", "letters, digits"), ("source", "set it to the app's repository")])
def test_missing_project_key(tmp_path, key, hint):
    text = set_key(LOCAL_INI, "project", key, None)
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{header(text, 'project')}: [project] {key}: "), msg
    assert hint in msg


def test_missing_project_section(tmp_path):
    text = LOCAL_INI.replace("[project]\n", "")
    text = text.split("\n", 5)[-1]    # the project's keys would otherwise be outside any section
    msg = config_error(tmp_path, text)
    assert "no [project] section" in msg and "add one" in msg


def test_missing_stage_hosts(tmp_path):
    text = set_key(LOCAL_INI, "stage:staging", "hosts", None)
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{header(text, 'stage:staging')}: [stage:staging] hosts: missing;")
    assert "hosts = ssh://" in msg


def test_empty_stage_hosts_names_its_line(tmp_path):
    text = set_key(LOCAL_INI, "stage:test", "hosts", " , ")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, '^hosts = +,', 'stage:test')}: [stage:test] hosts: missing")


def test_mysql_base_is_valid(tmp_path):
    cfg = load_config(write_ini(tmp_path, mysql_ini()), environ={"BLOG_TEST_DB_PASSWORD": "x"})
    assert cfg.databases["test"].dbname == "blog_test"


@pytest.mark.parametrize("key", ["name", "user"])
def test_missing_mysql_key(tmp_path, key):
    text = set_key(mysql_ini(), "database:test", key, None)
    msg = config_error(tmp_path, text, {"BLOG_TEST_DB_PASSWORD": "x"})
    assert msg.startswith(f"stages.ini:{header(text, 'database:test')}: [database:test] {key}: missing;")
    assert f"engine = mysql needs {key} =" in msg


def test_missing_password_env_and_option_file(tmp_path):
    text = set_key(mysql_ini(), "database:test", "password_env", None)
    msg = config_error(tmp_path, text)
    assert "[database:test] password_env: missing;" in msg and "option_file" in msg


def test_missing_sqlite_path(tmp_path):
    text = set_key(LOCAL_INI, "database:prod", "path", None)
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{header(text, 'database:prod')}: [database:prod] path: missing;")
    assert "path = " in msg


def test_sqlite_with_a_mysql_key(tmp_path):
    text = in_section(LOCAL_INI, "database:prod", "user = blog")
    msg = config_error(tmp_path, text)
    assert f":{line_of(text, '^user = blog')}: [database:prod] user: not used with engine = sqlite; remove it" in msg


def test_stage_names_a_missing_database(tmp_path):
    text = set_key(LOCAL_INI, "stage:staging", "database", "prd")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^database = prd")
    assert msg == (f"stages.ini:{line}: [stage:staging] database: names [database:prd], which does not exist; "
                   "add it or fix the name")


def test_restore_from_names_a_missing_database(tmp_path):
    text = set_key(LOCAL_INI, "stage:test", "restore_from", "production")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^restore_from = production")
    assert msg.startswith(f"stages.ini:{line}: [stage:test] restore_from: names [database:production], "
                          "which does not exist;")
    assert "add it or fix the name" in msg


def test_restore_from_its_own_database(tmp_path):
    text = set_key(LOCAL_INI, "stage:test", "restore_from", "test")
    msg = config_error(tmp_path, text)
    assert "[stage:test] restore_from: must name another database" in msg


def test_promote_from_names_a_missing_stage(tmp_path):
    text = set_key(LOCAL_INI, "stage:staging", "promote_from", "tst")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^promote_from = tst")
    assert msg == (f"stages.ini:{line}: [stage:staging] promote_from: names [stage:tst], which does not exist; "
                   "add it or fix the name")


def test_promote_from_cycle(tmp_path):
    text = in_section(LOCAL_INI, "stage:test", "promote_from = staging")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^promote_from = staging", "stage:test")
    assert msg.startswith(f"stages.ini:{line}: [stage:test] promote_from: ")
    assert "cycle (test -> staging -> test)" in msg and "break it" in msg


def test_promote_from_itself(tmp_path):
    text = set_key(LOCAL_INI, "stage:staging", "promote_from", "staging")
    msg = config_error(tmp_path, text)
    assert "[stage:staging] promote_from:" in msg and "cycle (staging -> staging)" in msg


def password_error(tmp_path, text: str, environ: dict, database: str = "test") -> str:
    """The file loads without the variable (status and list need no password); a command that needs the
    database's password asks for it: require_passwords and password() raise the one line."""
    cfg = load_config(write_ini(tmp_path, text), environ=environ)
    with pytest.raises(ConfigError) as info:
        cfg.require_passwords([database])
    with pytest.raises(ConfigError, match=re.escape(str(info.value))):
        cfg.databases[database].password()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("stages.ini"), msg
    return msg


def test_unset_password_env(tmp_path):
    text = mysql_ini()
    msg = password_error(tmp_path, text, {"BLOG_PROD_DB_PASSWORD": "set, but not the one needed"})
    line = line_of(text, "^password_env =")
    assert msg == (f"stages.ini:{line}: [database:test] password_env: environment variable BLOG_TEST_DB_PASSWORD "
                   "is not set; export it before running doit")


def test_unset_password_env_fails_only_the_databases_that_need_it(tmp_path):
    cfg = load_config(write_ini(tmp_path, DESIGN_INI), environ={"BLOG_PROD_DB_PASSWORD": "prod-secret"})
    cfg.require_passwords(["prod"])
    assert cfg.databases["prod"].password() == "prod-secret"
    with pytest.raises(ConfigError, match="BLOG_TEST_DB_PASSWORD is not set"):
        cfg.require_passwords(["prod", "test"])


def test_password_env_read_from_the_given_environ_not_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOG_TEST_DB_PASSWORD", "in os.environ only")
    msg = password_error(tmp_path, mysql_ini(), {})
    assert "BLOG_TEST_DB_PASSWORD is not set" in msg


@pytest.mark.parametrize("value", ["BLOG PASSWORD", "1PASS", "$BLOG_PW"])
def test_a_password_env_that_is_no_variable_name_is_refused_at_load(tmp_path, value):
    msg = config_error(tmp_path, set_key(mysql_ini(), "database:test", "password_env", value))
    assert "[database:test] password_env: " in msg and "is not an environment variable name" in msg


@pytest.mark.parametrize("base", ["mysql", "sqlite"])
def test_password_written_in_a_database_section(tmp_path, base):
    text = in_section(mysql_ini() if base == "mysql" else LOCAL_INI, "database:test", "password = hunter2")
    msg = config_error(tmp_path, text, {"BLOG_TEST_DB_PASSWORD": "x"})
    line = line_of(text, "^password = ")
    assert msg.startswith(f"stages.ini:{line}: [database:test] password: never write a password in stages.ini;")
    assert "password_env" in msg
    assert "hunter2" not in msg          # the error does not repeat the secret


@pytest.mark.parametrize("spec, why", [
    ("web1", "neither 'local' nor"),
    ("http://x", "neither 'local' nor"),
    ("ssh://h:notaport", "bad port"),
    ("ssh://h:99999", "bad port"),
    ("ssh://", "not of the form"),
    ("ssh://u:pw@h", "not of the form"),
    ("ssh://h/srv", "not of the form"),
    ("Local", "neither 'local' nor"),
])
def test_bad_host(tmp_path, spec, why):
    text = set_key(LOCAL_INI, "stage:staging", "hosts", f"local, {spec}")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^hosts = local, ", "stage:staging")
    assert msg.startswith(f"stages.ini:{line}: [stage:staging] hosts: host {spec!r} "), msg
    assert why in msg and "write 'local' or ssh://[user@]host[:port]" in msg
    with pytest.raises(ValueError):
        parse_host(spec)


def test_bad_backup_host(tmp_path):
    text = in_section(LOCAL_INI, "database:prod", "backup_host = db1")
    msg = config_error(tmp_path, text)
    assert f":{line_of(text, '^backup_host =')}: [database:prod] backup_host: host 'db1' is neither" in msg


@pytest.mark.parametrize("key", ["keep_releases", "keep_backups"])
@pytest.mark.parametrize("value", ["five", "2.5", "-1", "0", "3 releases"])
def test_non_integer_keep(tmp_path, key, value):
    text = in_section(LOCAL_INI, "project", f"{key} = {value}")
    msg = config_error(tmp_path, text)
    line = line_of(text, f"^{key} =")
    assert msg == f"stages.ini:{line}: [project] {key}: {value!r} is not a whole number >= 1; write e.g. " + (
        "5" if key == "keep_releases" else "10")


@pytest.mark.parametrize("section, value, problem", [
    ("project", "0", "'0' is no time to wait; write at least 1s, e.g. 60s"),
    ("stage:staging", "0s", "'0s' is no time to wait; write at least 1s, e.g. 60s"),
    ("stage:staging", "forever", "'forever' is not a duration like 30s, 15m, 24h or 2d")])
def test_a_reload_timeout_that_cannot_bound_a_wait_is_refused(tmp_path, section, value, problem):
    text = in_section(LOCAL_INI, section, f"reload_timeout = {value}")
    assert config_error(tmp_path, text) == \
        f"stages.ini:{line_of(text, '^reload_timeout =')}: [{section}] reload_timeout: {problem}"


@pytest.mark.parametrize("key", ["backup_max_age", "health_timeout", "reload_timeout"])
def test_bad_duration(tmp_path, key):
    text = in_section(LOCAL_INI, "project", f"{key} = 24 hours")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, f'^{key} =')}: [project] {key}: '24 hours' is not a duration")
    assert "like 30s, 15m, 24h or 2d" in msg


@pytest.mark.parametrize("name", ["my blog", "blog.v2", "blog/x", "blög"])
def test_bad_project_name(tmp_path, name):
    text = set_key(LOCAL_INI, "project", "name", name)
    msg = config_error(tmp_path, text)
    line = line_of(text, "^name =", "project")
    assert msg == (f"stages.ini:{line}: [project] name: {name!r} must be letters, digits, '-' or '_' "
                   "(it goes into release ids)")


def test_relative_deploy_root_with_ssh_hosts(tmp_path):
    text = set_key(LOCAL_INI, "project", "deploy_root", "srv/blog")
    text = set_key(text, "stage:staging", "hosts", "ssh://deploy@web1:22")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^deploy_root =")
    assert msg == f"stages.ini:{line}: [project] deploy_root: 'srv/blog' must be an absolute path on the hosts, " \
                  "e.g. /srv/blog"


def test_relative_sqlite_path_with_an_ssh_backup_host(tmp_path):
    text = set_key(LOCAL_INI, "database:prod", "path", "db/prod.sqlite3")
    text = in_section(text, "database:prod", "backup_host = ssh://db1")
    msg = config_error(tmp_path, text)
    assert f":{line_of(text, '^path = db/')}: [database:prod] path: 'db/prod.sqlite3' must be an absolute" in msg


def test_duplicate_links(tmp_path):
    text = set_key(LOCAL_INI, "stage:staging", "link", "sites/test")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^link = sites/test", "stage:staging")
    assert msg == (f"stages.ini:{line}: [stage:staging] link: sites/test is already the link of stage test; "
                   "give each stage its own link")


def test_default_links_of_two_stages_do_not_clash(tmp_path):
    text = set_key(set_key(LOCAL_INI, "stage:staging", "link", None), "stage:test", "link", None)
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert (cfg.stages["test"].link, cfg.stages["staging"].link) == ("sites/test", "sites/staging")


@pytest.mark.parametrize("link", ["/srv/sites/test", "../sites/test", "current"])
def test_bad_link(tmp_path, link):
    text = set_key(LOCAL_INI, "stage:test", "link", link)
    msg = config_error(tmp_path, text)
    assert f"[stage:test] link: {link!r} must be a relative path below deploy_root, like sites/test" in msg


@pytest.mark.parametrize("key, value, hint", [
    ("scm", "svn", "is not auto, git or hg"),
    ("build", "poetry", "use pip, buildout, command or none"),
    ("artifact_store", "/shared/path", "is neither push nor s3://bucket/prefix"),
    ("shared_dirs", "media, ../etc", "must be a relative path inside the release"),
    ("parallel", "0", "is not a whole number >= 1"),
])
def test_other_bad_project_values(tmp_path, key, value, hint):
    text = set_key(LOCAL_INI, "project", key, value) if key == "build" else \
        in_section(LOCAL_INI, "project", f"{key} = {value}")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, f'^{key} =')}: [project] {key}: ") and hint in msg


@pytest.mark.parametrize("key, value, hint", [
    ("batch", "half", "is not a number of hosts or a share like 50%"),
    ("batch", "0%", "is not a number of hosts"),
    ("max_fail", "-1", "is not a whole number >= 0"),
])
def test_other_bad_stage_values(tmp_path, key, value, hint):
    text = in_section(LOCAL_INI, "stage:staging", f"{key} = {value}")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, f'^{key} =')}: [stage:staging] {key}: ") and hint in msg


def test_stage_with_database_needs_settings(tmp_path):
    text = set_key(LOCAL_INI, "stage:test", "settings", None)
    msg = config_error(tmp_path, text)
    assert "[stage:test] settings: missing; name the DJANGO_SETTINGS_MODULE" in msg


def test_no_stage_at_all(tmp_path):
    text = LOCAL_INI[:LOCAL_INI.index("[stage:test]")]
    msg = config_error(tmp_path, text)
    assert "no [stage:<name>] section" in msg and "hosts = local" in msg


def test_syntax_error_is_one_line(tmp_path):
    text = LOCAL_INI + "\nthis line has no equals sign\n"
    msg = config_error(tmp_path, text)
    assert "fix the syntax" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.ini", environ={})
    assert "no such file" in str(info.value) and "STAGES_INI" in str(info.value)


def test_stages_ini_from_environ(tmp_path, monkeypatch):
    path = write_ini(tmp_path, LOCAL_INI)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(environ={"STAGES_INI": str(path)})
    assert cfg.path == path and cfg.project.name == "blog"


def test_password_comes_from_the_environ_given_to_load_config(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOG_PROD_DB_PASSWORD", "from os.environ")
    monkeypatch.setenv("BLOG_TEST_DB_PASSWORD", "from os.environ")
    cfg = load_config(write_ini(tmp_path, DESIGN_INI), environ=DESIGN_ENV)
    assert cfg.databases["prod"].password() == "prod-secret"
    assert cfg.databases["test"].password() == "test-secret"
    # the environment changing afterwards changes nothing (doit's actions run later, maybe elsewhere)
    monkeypatch.delenv("BLOG_PROD_DB_PASSWORD")
    assert cfg.databases["prod"].password() == "prod-secret"
    # never in a repr, and the password takes no part in equality
    assert "prod-secret" not in repr(cfg) and "prod-secret" not in str(cfg.databases["prod"])
    other = load_config(write_ini(tmp_path, DESIGN_INI), environ={**DESIGN_ENV, "BLOG_PROD_DB_PASSWORD": "other"})
    assert other.databases["prod"] == cfg.databases["prod"]


def test_option_file_database_has_no_password(tmp_path):
    text = set_key(mysql_ini(), "database:test", "password_env", None)
    text = in_section(text, "database:test", "option_file = ~/.my.cnf")
    cfg = load_config(write_ini(tmp_path, text), environ={"BLOG_TEST_DB_PASSWORD": "unused"})
    assert cfg.databases["test"].option_file == "~/.my.cnf"
    assert cfg.databases["test"].password() == ""


def test_sqlite_stage_with_two_hosts_is_refused(tmp_path):
    text = set_key(LOCAL_INI, "stage:staging", "hosts", "ssh://deploy@web1:22, ssh://deploy@web2:22")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^hosts = ssh://deploy@web1:22, ")
    assert msg == (f"stages.ini:{line}: [stage:staging] hosts: 2 hosts share [database:prod], an sqlite file: "
                   "each host would have its own database; use one host, or engine = mysql or postgresql")


def test_sqlite_stage_with_one_host_and_a_code_only_stage_with_many_are_fine(tmp_path):
    text = in_section(LOCAL_INI, "stage:staging", "")
    text += "\n[stage:static]\nhosts = ssh://deploy@web1:22, ssh://deploy@web2:22\nlink = sites/static\n"
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert len(cfg.stages["static"].hosts) == 2 and cfg.stages["static"].database is None


def test_infra_tests_relative_to_the_ini(tmp_path):
    (tmp_path / "conf" / "checks").mkdir(parents=True)
    text = in_section(LOCAL_INI, "project", "infra_tests = checks   ; our own testinfra checks")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert cfg.project.infra_tests == (tmp_path / "conf" / "checks").resolve()
    assert load_config(write_ini(tmp_path, LOCAL_INI), environ={}).project.infra_tests is None


def test_infra_tests_that_is_no_directory(tmp_path):
    text = in_section(LOCAL_INI, "project", "infra_tests = chekcs")
    msg = config_error(tmp_path, text)
    line = line_of(text, "^infra_tests =")
    assert msg.startswith(f"stages.ini:{line}: [project] infra_tests: ") and "chekcs is not a directory" in msg


# -- build = buildout ------------------------------------------------------------------------------------
def test_buildout_config_defaults_and_per_stage(tmp_path):
    text = in_section(set_key(LOCAL_INI, "project", "build", "buildout"), "stage:staging",
                      "buildout_config = deploy/prod.cfg")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert cfg.project.build == "buildout" and cfg.project.buildout_config == "buildout.cfg"
    assert cfg.stages["test"].buildout_config == "buildout.cfg"
    assert cfg.stages["staging"].buildout_config == "deploy/prod.cfg"
    text = in_section(set_key(LOCAL_INI, "project", "build", "buildout"), "project", "buildout_config = base.cfg")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert [s.buildout_config for s in cfg.stages.values()] == ["base.cfg", "base.cfg"]


@pytest.mark.parametrize("section", ["project", "stage:staging"])
def test_buildout_config_without_build_buildout_is_refused(tmp_path, section):
    text = in_section(LOCAL_INI, section, "buildout_config = buildout.cfg")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, '^buildout_config =')}: [{section}] buildout_config: ")
    assert "only used with build = buildout (build is none); remove it" in msg


@pytest.mark.parametrize("value", ["/etc/buildout.cfg", "../buildout.cfg", "deploy/../../x.cfg"])
def test_buildout_config_outside_the_release_is_refused(tmp_path, value):
    text = in_section(set_key(LOCAL_INI, "project", "build", "buildout"), "stage:test", f"buildout_config = {value}")
    msg = config_error(tmp_path, text)
    assert f"[stage:test] buildout_config: {value!r} must be a file inside the release" in msg


# -- artifact_store = s3://bucket/prefix --------------------------------------------------------------
S3_KEYS = ("artifact_store = s3://blog-artifacts/releases/blog/\ns3_endpoint = http://127.0.0.1:9000\n"
           "s3_region = eu-west-1")


def test_s3_store_parses(tmp_path):
    cfg = load_config(write_ini(tmp_path, in_section(LOCAL_INI, "project", S3_KEYS)), environ={})
    store = cfg.project.store
    assert (store.bucket, store.prefix, store.endpoint, store.region) == \
        ("blog-artifacts", "releases/blog", "http://127.0.0.1:9000", "eu-west-1")
    assert store.key("x.tar.gz") == "releases/blog/x.tar.gz" and store.url == "s3://blog-artifacts/releases/blog"
    bare = load_config(write_ini(tmp_path, in_section(LOCAL_INI, "project", "artifact_store = s3://b-1")),
                       environ={}).project.store
    assert (bare.bucket, bare.prefix, bare.endpoint, bare.key("a")) == ("b-1", "", "", "a")
    assert load_config(write_ini(tmp_path, LOCAL_INI), environ={}).project.store is None


@pytest.mark.parametrize("key, value, hint", [
    ("artifact_store", "s3://Bucket/x", "is not an S3 bucket name"),
    ("artifact_store", "s3://ab/x", "is not an S3 bucket name"),
    ("artifact_store", "s3://192.168.1.1/x", "is not an S3 bucket name"),
    ("artifact_store", "s3://a..b/x", "is not an S3 bucket name"),
    ("artifact_store", "s3://bucket/a//b", "may hold only letters"),
    ("artifact_store", "s3://bucket/a/../b", "may hold only letters"),
    ("artifact_store", "s3://bucket/a b", "may hold only letters"),
    ("artifact_store", "https://bucket.s3.amazonaws.com/x", "is neither push nor s3://bucket/prefix"),
    ("s3_endpoint", "store:9000", "is not http(s)://host[:port]"),
    ("s3_endpoint", "ftp://store:9000", "is not http(s)://host[:port]"),
    ("s3_endpoint", "http://store:9000/path", "is not http(s)://host[:port]"),
    ("s3_endpoint", "http://key:secret@store:9000", "is not http(s)://host[:port]"),
    ("s3_endpoint", "http://store:99999", "has a bad port"),
    ("s3_endpoint", "http://store:9000/?x=1", "is not http(s)://host[:port]"),
    ("s3_region", "EU West", "is not a region name like eu-west-1"),
])
def test_bad_s3_values(tmp_path, key, value, hint):
    keys = {"artifact_store": "s3://bucket/x", key: value}
    text = in_section(LOCAL_INI, "project", "\n".join(f"{k} = {v}" for k, v in keys.items()))
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, f'^{key} =')}: [project] {key}: ") and hint in msg, msg


@pytest.mark.parametrize("key", ["s3_endpoint", "s3_region"])
def test_s3_keys_need_an_s3_store(tmp_path, key):
    text = in_section(LOCAL_INI, "project", f"{key} = {'http://store:9000' if key == 's3_endpoint' else 'x-1'}")
    msg = config_error(tmp_path, text)
    assert f"[project] {key}: only used with artifact_store = s3://bucket/prefix" in msg


def test_s3_store_without_boto3_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # how Python marks a module as not importable
    msg = config_error(tmp_path, in_section(LOCAL_INI, "project", "artifact_store = s3://bucket/x"))
    assert "[project] artifact_store: an S3 store needs boto3 on this machine; pip install 'doit-stages[s3]'" in msg


# -- command keys: their text as written (a ' ;' in quotes is no comment), split into argv at load -----------
GUNICORN = "sh -c 'kill -TERM $(cat run/app.pid) ; exec gunicorn blog.wsgi -p run/app.pid'"


@pytest.mark.parametrize("section", ["project", "stage:staging"])
def test_a_semicolon_in_shell_quotes_is_part_of_the_command(tmp_path, section):
    text = in_section(LOCAL_INI, section, f"reload_command = {GUNICORN}   ; gunicorn reloads by restarting")
    stage = load_config(write_ini(tmp_path, text), environ={}).stages["staging"]
    assert stage.reload_command == GUNICORN
    assert stage.reload_argv == ("sh", "-c", "kill -TERM $(cat run/app.pid) ; exec gunicorn blog.wsgi -p run/app.pid")


def test_every_command_key_is_split_at_load(tmp_path):
    text = in_section(LOCAL_INI, "project", "\n".join([
        'build_command = sh -c "npm ci ; npm run build"  ; the assets',
        "migrate_command = bin/django migrate --noinput ; buildout's script",
        "reload_command = systemctl reload 'app ; x'",
        "health_headers = X-Forwarded-Proto: https   ; the app sits behind a TLS proxy"]))
    text = in_section(text, "stage:test", "reload_command = touch a\\ ;b ; c")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert cfg.project.build_argv == ("sh", "-c", "npm ci ; npm run build")
    assert cfg.project.migrate_argv == ("bin/django", "migrate", "--noinput")
    assert cfg.project.migrate_command == "bin/django migrate --noinput"
    assert cfg.project.reload_argv == cfg.stages["staging"].reload_argv == ("systemctl", "reload", "app ; x")
    assert cfg.stages["test"].reload_argv == ("touch", "a ;b")
    assert cfg.project.health_headers == (("X-Forwarded-Proto", "https"),)


def test_the_default_migrate_command_is_split_too(tmp_path):
    cfg = load_config(write_ini(tmp_path, LOCAL_INI), environ={})
    assert cfg.project.migrate_argv == ("python", "manage.py", "migrate", "--noinput")
    assert cfg.project.build_argv == cfg.project.reload_argv == cfg.stages["test"].reload_argv == ()


def test_outside_command_keys_quotes_do_not_hide_a_comment(tmp_path):
    text = in_section(LOCAL_INI, "project", "revision = it's ; the first release's tag")
    assert load_config(write_ini(tmp_path, text), environ={}).project.revision == "it's"


@pytest.mark.parametrize("section, key, value, hint", [
    ("project", "reload_command", "sh -c 'kill -HUP 1", "no closing quotation"),
    ("project", "build_command", 'sh -c "make ; ls', "no closing quotation"),
    ("project", "migrate_command", "python manage.py migrate \\", "no escaped character"),
    ("project", "migrate_command", "'' migrate", "names an empty program"),
    ("stage:staging", "reload_command", "it's ; a comment? no: the quote is open", "no closing quotation"),
])
def test_a_command_that_cannot_be_split_is_refused_at_load(tmp_path, section, key, value, hint):
    text = in_section(LOCAL_INI, section, f"{key} = {value}")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, f'^{key} =', section)}: [{section}] {key}: "), msg
    assert hint in msg, msg


@pytest.mark.parametrize("value, hint", [
    ("Host blog.example.com", "is not a header 'Name: value'"),
    ("X-Forwarded-Proto: https, Host: a, host: b", "host is given twice"),
    ("Content-Length: 5", "would make the health check's GET wait for a body"),
    ("Transfer-Encoding: chunked", "would make the health check's GET wait for a body"),
    ("X-Evil: a\x7fb", "not printable ASCII"),
    ("X-Proto: https\n  Host: b", "holds a line break"),
    ("X-Name: caf\u00e9", "not printable ASCII"),
    ("Bad Name: x", "is not a header"),
])
def test_bad_health_headers(tmp_path, value, hint):
    text = in_section(LOCAL_INI, "stage:staging", f"health_headers = {value}")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, '^health_headers =')}: [stage:staging] health_headers: ")
    assert hint in msg and "write e.g. X-Forwarded-Proto: https, Host: blog.example.com" in msg, msg


def test_health_headers_over_lines_and_with_commas_in_a_value(tmp_path):
    text = in_section(LOCAL_INI, "project", "health_headers = Accept: text/html, */*;q=0.8,\n"
                                            "    Host: blog.example.com   ; the site's name")
    text = in_section(text, "stage:staging", "health_headers = Host: staging.example.com")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert cfg.stages["test"].health_headers == (("Accept", "text/html, */*;q=0.8"), ("Host", "blog.example.com"))
    assert cfg.stages["staging"].health_headers == (("Host", "staging.example.com"),)


def test_a_section_header_keeps_its_inline_comment_out_even_with_brackets(tmp_path):
    text = LOCAL_INI.replace("[stage:staging]\n", "[stage:staging]   ; promoted from [stage:test]\n")
    cfg = load_config(write_ini(tmp_path, text), environ={})
    assert list(cfg.stages) == ["test", "staging"] and cfg.stages["staging"].promote_from == "test"


# -- one host, one way of writing it ----------------------------------------------------------------
@pytest.mark.parametrize("hosts, words", [
    ("ssh://deploy@web1:22, ssh://deploy@web1:22", ["ssh://deploy@web1:22 is listed twice", "list each host once"]),
    ("local, local", ["local is listed twice"]),
    ("ssh://deploy@127.0.0.1:2201, ssh://deploy@localhost:2201",
     ["ssh://deploy@127.0.0.1:2201 and ssh://deploy@localhost:2201 are one host", "list it once"]),
    ("ssh://deploy@[::1]:2201, ssh://deploy@LocalHost.:2201", ["are one host"]),
    ("ssh://deploy@[0:0:0:0:0:0:0:1]:22, ssh://deploy@[::1]:22", ["are one host"]),
])
def test_the_same_host_twice_in_a_stage_is_refused_naming_its_hosts_line(tmp_path, hosts, words):
    text = set_key(LOCAL_INI, "stage:staging", "hosts", hosts)
    text = set_key(text, "project", "deploy_root", "/srv/blog")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, '^hosts = ', 'stage:staging')}: [stage:staging] hosts: "), msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("hosts", [
    "ssh://deploy@127.0.0.1:2201, ssh://deploy@127.0.0.1:2202",      # two ports: two sshd, two hosts
    "ssh://deploy@127.0.0.1:2201, ssh://other@127.0.0.1:2201",       # two logins
    "ssh://deploy@web1, ssh://deploy@web1:22",                        # ssh_config may give web1 another port
    "ssh://deploy@127.0.0.1:2201, ssh://deploy@127.0.0.2:2201",      # may be two sockets
])
def test_hosts_that_may_differ_are_accepted(tmp_path, hosts):
    text = set_key(set_key(LOCAL_INI, "stage:staging", "hosts", hosts), "project", "deploy_root", "/srv/blog")
    text = set_key(text, "stage:staging", "database", None)
    text = set_key(text, "stage:staging", "promote_from", None)
    assert len(load_config(write_ini(tmp_path, text), environ={}).stages["staging"].hosts) == 2


def test_one_host_written_two_ways_in_two_sections_is_refused(tmp_path):
    text = set_key(LOCAL_INI, "project", "deploy_root", "/srv/blog")
    text = set_key(text, "stage:test", "hosts", "ssh://deploy@127.0.0.1:2201")
    text = set_key(text, "stage:staging", "hosts", "ssh://deploy@localhost:2201")
    msg = config_error(tmp_path, text)
    assert msg.startswith(f"stages.ini:{line_of(text, '^hosts = ', 'stage:staging')}: [stage:staging] hosts: "
                          "ssh://deploy@localhost:2201 is ssh://deploy@127.0.0.1:2201 of [stage:test]"), msg
    text = set_key(text, "stage:staging", "hosts", "ssh://deploy@127.0.0.1:2201")
    bad = in_section(text, "database:prod", "backup_host = ssh://deploy@[::1]:2201")
    msg = config_error(tmp_path, bad)
    assert "[database:prod] backup_host: ssh://deploy@[::1]:2201 is ssh://deploy@127.0.0.1:2201" in msg, msg
    load_config(write_ini(tmp_path, in_section(text, "database:prod", "backup_host = ssh://deploy@127.0.0.1:2201")),
                environ={})


# -- the file's encoding ----------------------------------------------------------------------------
@pytest.mark.parametrize("encoding, words", [
    ("utf-16", ["UTF-16", "save it as UTF-8"]),
    ("utf-16-le", ["UTF-16", "save it as UTF-8"]),
    ("latin-1", ["stages.ini:2: the file is not UTF-8 (byte 0xe9", "save it as UTF-8"]),
])
def test_a_file_not_in_utf8_is_one_line_naming_it(tmp_path, encoding, words):
    text = LOCAL_INI.replace("name = blog", "name = blog   ; the café's blog", 1)
    path = write_ini(tmp_path, "")
    path.write_bytes(text.encode(encoding))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, msg


def test_utf8_with_a_bom_is_read(tmp_path):
    path = write_ini(tmp_path, "")
    path.write_bytes(LOCAL_INI.replace("name = blog", "name = blog   ; the café's blog", 1).encode("utf-8-sig"))
    assert load_config(path, environ={}).project.name == "blog"
