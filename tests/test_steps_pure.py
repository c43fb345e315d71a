"""The pure functions under the steps: names and paths, tar member checks, row counts, option files, the app's
environment, the release log, cleanup's choice, migrate's check, batches, health URLs. No host, no server."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from doit_stages.config import Config, Database, Host, Project, Stage, parse_host, split_command
from doit_stages.db import counts_mismatch, option_file, parse_row_counts
from doit_stages.layout import Layout, backup_name, is_release_id, release_id
from doit_stages.session import Session
from doit_stages.steps.archive import member_problem
from doit_stages.steps.cleanup import releases_to_remove
from doit_stages.steps.environment import database_url, env_file, env_values
from doit_stages.steps.health import health_url
from doit_stages.steps.migrate import check_argv
from doit_stages.steps.releaselog import last_switch, parse_log, rollback_target

# Every character that a shell, an option-file reader or a URL parser treats specially.
NASTY = " p w;$(touch {marker})`touch {marker}`'\"#\\x:/@%?&|<>*!{{}}[]~ "
REV = "0123456789abcdef0123456789abcdef01234567"


def rid(n: int, name: str = "blog") -> str:
    """A release id; a larger n is a later commit."""
    return release_id(name, 1_700_000_000 + 3600 * n, f"{n:012x}" + "0" * 28)


# -- layout ---------------------------------------------------------------------------------------------
def test_release_id_uses_utc_and_12_hex(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kathmandu")     # +05:45: a local-time id would say 03:58 the next day
    time.tzset()
    try:
        assert release_id("blog", 1_700_000_000, REV) == "blog-2023-11-14-2213-0123456789ab"
        assert release_id("my-blog_2", 0, "f" * 40) == "my-blog_2-1970-01-01-0000-ffffffffffff"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("text, ok", [
    ("blog-2023-11-14-2213-0123456789ab", True),
    ("my-blog_2-1970-01-01-0000-ffffffffffff", True),
    ("blog-2023-11-14-2213-0123456789AB", False),      # hex is lower case
    ("blog-2023-11-14-2213-0123456789a", False),       # 11 hex
    ("blog-2023-11-14-2213-0123456789abc", False),     # 13 hex
    ("blog-2023-11-14-0123456789ab", False),           # no time
    ("blog-2023-11-14-2213-0123456789ab/", False),
    ("2023-11-14-2213-0123456789ab", False),           # no name
    ("blog.v2-2023-11-14-2213-0123456789ab", False),
    ("current", False),
    ("", False),
])
def test_is_release_id(text, ok):
    assert is_release_id(text) is ok


def test_release_id_round_trips_through_is_release_id():
    assert is_release_id(release_id("blog", 1_234_567_890, REV))


def test_backup_name_is_utc_with_milliseconds():
    when = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    assert backup_name("blog", "prod", when) == "blog-prod-20240102T030405.678Z"
    east = datetime(2024, 1, 2, 5, 4, 5, 9000, tzinfo=timezone(timedelta(hours=2)))
    assert backup_name("blog", "prod", east) == "blog-prod-20240102T030405.009Z"


def test_backup_names_sort_by_time():
    base = datetime(2024, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
    names = [backup_name("b", "d", base + timedelta(milliseconds=i)) for i in (0, 1, 1000, 86_400_000)]
    assert names == sorted(names) and len(set(names)) == 4


def test_layout_paths():
    lay = Layout("/srv/blog/")
    r = rid(1)
    assert lay.root == "/srv/blog"
    assert lay.release(r) == f"/srv/blog/releases/{r}"
    assert lay.link("sites/test") == "/srv/blog/sites/test"
    assert lay.env_file("test") == "/srv/blog/shared/test.env"
    assert lay.release_env(r, "test") == f"/srv/blog/releases/{r}/.deploy-env/test.env"
    assert lay.live_env("sites/test", "test") == "/srv/blog/sites/test/.deploy-env/test.env"
    assert lay.env_file_target("sites/test", "test") == "../sites/test/.deploy-env/test.env"
    assert lay.env_file_target("a/b/live", "prod") == "../a/b/live/.deploy-env/prod.env"
    assert lay.stage_dir("test") == "/srv/blog/shared/test"
    assert (lay.lock, lay.log) == ("/srv/blog/.deploy/lock", "/srv/blog/.deploy/releases.jsonl")
    assert lay.backups == "/srv/blog/db_backup"
    assert lay.artifact(r) == f"/srv/blog/.deploy/artifacts/{r}.tar.gz"
    assert Layout("/").releases == "/releases"


@pytest.mark.parametrize("link, target", [
    ("sites/test", "../releases/{r}"),
    ("sites/current", "../releases/{r}"),
    ("a/b/live", "../../releases/{r}"),
])
def test_link_target_is_relative(link, target):
    r = rid(2)
    lay = Layout("/srv/blog")
    got = lay.link_target(link, r)
    assert got == target.format(r=r)
    # and it really lands on the release when resolved from the link's directory
    assert os.path.normpath(os.path.join(os.path.dirname(lay.link(link)), got)) == lay.release(r)


# -- archive.member_problem -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, kind, linkname, words", [
    ("/etc/passwd", "file", "", "leaves the release"),
    ("../x", "file", "", "leaves the release"),
    ("a/../../x", "file", "", "leaves the release"),
    ("a/..", "dir", "", "leaves the release"),
    ("x", "symlink", "../../etc/passwd", "leaves the release"),
    ("x", "symlink", "..", "leaves the release"),
    ("a/b", "symlink", "../../x", "leaves the release"),
    ("a/b", "symlink", "c/../../../x", "leaves the release"),
    ("x", "symlink", "/etc/passwd", "absolute path"),
    ("dev/null", "other", "", "not a regular file"),
    ("fifo", "other", "", "not a regular file"),
])
def test_member_refused(name, kind, linkname, words):
    problem = member_problem(name, kind, linkname)
    assert problem and words in problem and name in problem


@pytest.mark.parametrize("name, kind, linkname", [
    ("manage.py", "file", ""),
    ("blog/settings", "dir", ""),
    ("a/..b/c", "file", ""),             # '..b' is a name, not '..'
    ("static/css", "symlink", "../assets/css"),   # a link to a sibling directory
    ("a/b", "symlink", ".."),            # the release root itself
    ("a/b", "symlink", "./c/../d"),
    ("latest", "symlink", "blog"),
])
def test_member_ok(name, kind, linkname):
    assert member_problem(name, kind, linkname) is None


# -- db: row counts, option files -----------------------------------------------------------------------
def test_parse_row_counts():
    text = "auth_user\t3\nposts_post\t10\n\nmy table\t0\n"
    assert parse_row_counts(text) == {"auth_user": 3, "posts_post": 10, "my table": 0}
    assert parse_row_counts("") == {}


@pytest.mark.parametrize("bad", ["auth_user 3", "auth_user\t-1", "auth_user\tNULL", "\t4", "auth_user\t3\tx"])
def test_parse_row_counts_refuses_a_bad_line(bad):
    with pytest.raises(ValueError) as info:
        parse_row_counts(f"ok\t1\n{bad}\n")
    assert repr(bad) in str(info.value)


def test_counts_match_exactly_without_after():
    assert counts_mismatch({"a": 1, "b": 2}, None, {"a": 1, "b": 2}) == []
    assert counts_mismatch({"a": 1}, None, {"a": 2}) == ["a: 2 rows, backup has 1"]


@pytest.mark.parametrize("actual, problems", [
    (10, []), (11, []), (12, []),
    (9, ["a: 9 rows, backup has 10"]),
    (13, ["a: 13 rows, backup has 10"]),
])
def test_counts_between_before_and_after(actual, problems):
    assert counts_mismatch({"a": 10}, {"a": 12}, {"a": actual}) == problems
    # rows deleted while dumping: the range is the other way round
    assert counts_mismatch({"a": 12}, {"a": 10}, {"a": actual}) == [p.replace("has 10", "has 12") for p in problems]


def test_counts_missing_and_extra_tables():
    before = {"a": 1, "b": 2}
    assert counts_mismatch(before, before, {"a": 1}) == ["b: missing"]
    assert counts_mismatch(before, before, {"a": 1, "b": 2, "c": 0}) == ["c: not in the backup"]
    # a table created while dumping may be there, empty
    assert counts_mismatch({"a": 1}, {"a": 1, "n": 0}, {"a": 1, "n": 0}) == []


def mysql_db(password_env: str = "DST_PURE_PW", **kw) -> Database:
    args = dict(name="prod", engine="mysql", dbname="blog_prod", host="db.example", port=3307, user="blog",
                password_env=password_env, secret=os.environ.get(password_env, "") if password_env else "")
    args.update(kw)
    return Database(**args)


def test_option_file_plain(monkeypatch):
    monkeypatch.setenv("DST_PURE_PW", "secret")
    assert option_file(mysql_db()) == (b'[client]\nhost="db.example"\nport=3307\nuser="blog"\npassword="secret"\n')


def test_option_file_without_password_env_has_no_password_line():
    text = option_file(mysql_db(password_env="", option_file="~/.my.cnf")).decode()
    assert "password" not in text and text.startswith("[client]\n")


def test_option_file_quotes_every_nasty_character(monkeypatch, tmp_path):
    """Read back by MariaDB's own option-file reader (my_print_defaults), as mysqldump would read it."""
    reader = shutil.which("my_print_defaults")
    if reader is None:
        pytest.skip("my_print_defaults (MariaDB client) is not installed")
    password = NASTY.format(marker=tmp_path / "pwned") + "\\n\\\\ end\\"
    monkeypatch.setenv("DST_PURE_PW", password)
    cnf = tmp_path / "client.cnf"
    cnf.write_bytes(option_file(mysql_db(user="o'neil \"x\" #1")))
    out = subprocess.run([reader, f"--defaults-file={cnf}", "client"], capture_output=True, text=True, check=True)
    opts = dict(line[2:].split("=", 1) for line in out.stdout.splitlines())
    assert opts == {"host": "db.example", "port": "3307", "user": "o'neil \"x\" #1", "password": password}
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("brk", ["\n", "\r"])
def test_option_file_refuses_a_line_break(monkeypatch, brk):
    monkeypatch.setenv("DST_PURE_PW", f"top{brk}secret")
    with pytest.raises(ValueError) as info:
        option_file(mysql_db())
    msg = str(info.value)
    assert "line break" in msg and "DST_PURE_PW" in msg and "[database:prod]" in msg
    assert "secret" not in msg


# -- environment: DATABASE_URL and the env file -----------------------------------------------------------
URL_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%:/@")


def test_database_url_percent_encodes(monkeypatch, tmp_path):
    password = NASTY.format(marker=tmp_path / "pwned")
    monkeypatch.setenv("DST_PURE_PW", password)
    url = database_url(mysql_db(user="us er@x", dbname="blog prod"))
    assert set(url) <= URL_SAFE, f"unencoded characters: {set(url) - URL_SAFE}"
    parts = urlsplit(url)
    assert parts.scheme == "mysql" and parts.hostname == "db.example" and parts.port == 3307
    assert unquote(parts.username) == "us er@x" and unquote(parts.password) == password
    assert unquote(parts.path) == "/blog prod"


def test_database_url_without_password_and_sqlite():
    assert database_url(mysql_db(password_env="", option_file="/etc/x.cnf")) == "mysql://blog@db.example:3307/blog_prod"
    sqlite = Database(name="test", engine="sqlite", path="/srv/blog/db/test.sqlite3")
    assert database_url(sqlite) == "sqlite:////srv/blog/db/test.sqlite3"


def make_config(db: Database | None, stage_kw: dict | None = None) -> tuple[Config, Stage]:
    project = Project(name="blog", source=Path("/nonexistent"), deploy_root="/srv/blog", build="none")
    kw = dict(name="test", hosts=(Host("local"),), link="sites/test", settings="blog.settings.test",
              database=db.name if db else None)
    stage = Stage(**{**kw, **(stage_kw or {})})
    return Config(Path("/nonexistent/stages.ini"), project, {db.name: db} if db else {}, {"test": stage}), stage


def source_env_file(path: Path) -> dict[str, str]:
    """What `sh` sees after `set -a; . file` (env -0: values may hold anything but NUL)."""
    out = subprocess.run(["sh", "-c", 'set -a; . "$1" || exit 9; env -0', "sh", str(path)], capture_output=True,
                         env={"PATH": os.environ["PATH"]}, check=True, cwd=path.parent).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if item)


def test_env_file_is_sourceable_with_a_nasty_password(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    password = NASTY.format(marker=marker)
    monkeypatch.setenv("DST_PURE_PW", password)
    config, stage = make_config(mysql_db())
    path = tmp_path / "test.env"
    path.write_bytes(env_file(Layout(config.project.deploy_root), config, stage))
    env = source_env_file(path)
    assert env["STAGE"] == "test"
    assert env["STAGE_DIR"] == "/srv/blog/shared/test"
    assert env["DJANGO_SETTINGS_MODULE"] == "blog.settings.test"
    assert env["DATABASE_URL"] == database_url(mysql_db())
    assert unquote(urlsplit(env["DATABASE_URL"]).password) == password
    assert not marker.exists(), "sourcing the env file ran a command"
    assert password not in path.read_text()           # only ever URL-encoded


def test_env_file_values_with_quotes_survive(monkeypatch, tmp_path):
    db = Database(name="test", engine="sqlite", path="/srv/it's a \"db\"/$HOME`x`.sqlite3")
    config, stage = make_config(db, {"settings": "it's \"$(odd)\""})
    path = tmp_path / "test.env"
    path.write_bytes(env_file(Layout(config.project.deploy_root), config, stage))
    env = source_env_file(path)
    assert env["DATABASE_URL"] == "sqlite:///" + quote(db.path, safe="/")
    assert env["DJANGO_SETTINGS_MODULE"] == "it's \"$(odd)\""
    assert set(env) >= set(env_values(Layout(config.project.deploy_root), config, stage))


def test_env_file_of_a_stage_without_database(tmp_path):
    config, stage = make_config(None)
    assert "DATABASE_URL" not in env_values(Layout(config.project.deploy_root), config, stage)
    path = tmp_path / "test.env"
    path.write_bytes(env_file(Layout(config.project.deploy_root), config, stage))
    assert source_env_file(path)["STAGE_DIR"] == "/srv/blog/shared/test"


def test_option_file_path_is_exported(tmp_path):
    db = mysql_db(password_env="", option_file="~/.my.cnf")
    config, stage = make_config(db)
    assert env_values(Layout(config.project.deploy_root), config, stage)["DATABASE_OPTION_FILE"] == "~/.my.cnf"


# -- releaselog -----------------------------------------------------------------------------------------
def rec(stage, release, result, **kw):
    return {"stage": stage, "release": release, "result": result, "revision": "r-" + release, **kw}


def test_parse_log_skips_a_torn_last_line_and_junk():
    text = ('{"stage": "test", "release": "A", "result": "ok"}\n'
            "\n"
            "[1, 2]\n"
            '{"stage": "test", "release": "B", "result": "ok"}\n'
            '{"stage": "test", "release": "C", "res')
    assert [r["release"] for r in parse_log(text)] == ["A", "B"]
    assert parse_log("") == []


def test_rollback_target_is_the_previous_good_release():
    log = [rec("prod", "A", "ok"), rec("test", "X", "ok"), rec("prod", "B", "ok"), rec("prod", "C", "ok"),
           rec("test", "Y", "ok")]
    assert rollback_target(log, "prod", "C") == "B"
    assert rollback_target(log, "test", "Y") == "X"
    assert rollback_target(log, "prod", "A") == "C"     # the newest one that is not current
    assert rollback_target([rec("prod", "A", "ok")], "prod", "A") is None


def test_rollback_target_skips_bad_and_failed_releases():
    log = [rec("prod", "A", "ok"), rec("prod", "B", "ok"),
           rec("prod", "C", "ok"), rec("prod", "B", "rollback"), rec("prod", "C", "bad"),
           rec("prod", "D", "failed"), rec("prod", "E", "ok")]
    # E is current; C was rolled away from (bad), D's switch failed: B, which runs again since the rollback
    assert rollback_target(log, "prod", "E") == "B"
    # from B: C is bad, so back to A
    log2 = log[:5]
    assert rollback_target(log2, "prod", "B") == "A"


def test_a_bad_release_promoted_again_is_good_again():
    log = [rec("prod", "A", "ok"), rec("prod", "B", "ok"), rec("prod", "A", "rollback"), rec("prod", "B", "bad"),
           rec("prod", "B", "ok"), rec("prod", "C", "ok")]
    assert rollback_target(log, "prod", "C") == "B"


def test_last_switch():
    log = [rec("prod", "A", "ok", time="t1"), rec("test", "A", "ok", time="t2"), rec("prod", "B", "ok", time="t3"),
           rec("prod", "A", "rollback", time="t4"), rec("prod", "B", "bad", time="t5"),
           rec("prod", "C", "failed", time="t6")]
    assert last_switch(log, "prod", "A")["time"] == "t4"
    assert last_switch(log, "test", "A")["time"] == "t2"
    assert last_switch(log, "prod", "B")["time"] == "t3"       # not the 'bad' mark
    assert last_switch(log, "prod", "C") is None               # a failed switch put nothing live
    assert last_switch(log, "prod", None) is None


# -- cleanup --------------------------------------------------------------------------------------------
def test_cleanup_keeps_linked_and_newest_good_per_stage():
    r = [rid(i) for i in range(10)]
    existing = r + ["tmp", "blog-junk", f"{r[0]}.tmp"]
    log = [rec("prod", r[i], "ok") for i in (0, 1, 2, 3, 4)] + [rec("test", r[i], "ok") for i in (5, 6, 7)]
    doomed = releases_to_remove(existing, linked={r[1]}, log=log, keep=2)
    # prod keeps r3, r4; test keeps r6, r7; r1 is linked; r8, r9 were never switched; non-ids are not touched
    assert doomed == sorted([r[0], r[2], r[5], r[8], r[9]])


def test_cleanup_counts_a_release_once_and_ignores_failed_switches():
    r = [rid(i) for i in range(5)]
    log = [rec("prod", r[0], "ok"), rec("prod", r[1], "ok"), rec("prod", r[1], "ok"), rec("prod", r[2], "failed")]
    assert releases_to_remove(r, linked=set(), log=log, keep=2) == sorted([r[2], r[3], r[4]])
    # keep=1 still keeps r0: it is what rollback would return to (invariant 6)
    assert releases_to_remove(r, linked={r[3]}, log=log, keep=1) == sorted([r[2], r[4]])


def test_cleanup_keeps_a_rollback_target():
    r = [rid(i) for i in range(4)]
    log = [rec("prod", r[i], "ok") for i in range(4)]
    current = r[3]
    assert rollback_target(log, "prod", current) not in releases_to_remove(r, {current}, log, keep=2)


def test_cleanup_keeps_the_rollback_target_after_a_rollback():
    r = [rid(i) for i in range(4)]           # A B C D
    log = [rec("prod", r[i], "ok") for i in range(4)]
    # rollback:prod from D to C: the log gets 'rollback C' and 'bad D', then cleanup runs with keep = 2
    log += [rec("prod", r[2], "rollback"), rec("prod", r[3], "bad")]
    target = rollback_target(log, "prod", r[2])
    assert target == r[1]
    assert target not in releases_to_remove(r, {r[2]}, log, keep=2)


# -- migrate --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, check", [
    ("python manage.py migrate --noinput", ["python", "manage.py", "migrate", "--check"]),
    ("./manage.py migrate --no-input posts", ["./manage.py", "migrate", "posts", "--check"]),
    ("python src/manage.py migrate", ["python", "src/manage.py", "migrate", "--check"]),
    ("python manage.py showmigrations", None),
    ("alembic upgrade head", None),
    ("sh -c 'flask db upgrade'", None),
    ("bin/django migrate --noinput", ["bin/django", "migrate", "--check"]),
    ("django-admin migrate", ["django-admin", "migrate", "--check"]),
    ("bin/django showmigrations", None),
    ("bin/instance migrate", None),          # another control-script name: the marker fallback
])
def test_check_argv(command, check):
    assert check_argv(split_command(command)) == check


# -- session.batches ---------------------------------------------------------------------------------------
HOSTS3 = tuple(parse_host(f"ssh://deploy@web{i}:22") for i in (1, 2, 3))


@pytest.mark.parametrize("batch, sizes", [
    ("100%", [3]), ("50%", [2, 1]), ("34%", [2, 1]), ("33%", [1, 1, 1]), ("1%", [1, 1, 1]),
    ("1", [1, 1, 1]), ("2", [2, 1]), ("3", [3]), ("10", [3]), ("200%", [3]),
])
def test_batches(batch, sizes):
    stage = Stage(name="prod", hosts=HOSTS3, link="sites/current", batch=batch)
    config = Config(Path("/nonexistent/stages.ini"), Project(name="blog", source=Path("/nonexistent")), {},
                    {"prod": stage})
    batches = Session(config, environ={}, argv=["doit"]).batches(stage)
    assert [len(b) for b in batches] == sizes
    assert [h for b in batches for h in b] == list(HOSTS3)      # every host once, in order


# -- health ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, url", [
    ("local", "http://127.0.0.1:8000/health/"),
    ("ssh://deploy@web1:2222", "http://web1:8000/health/"),
    ("ssh://10.1.2.3", "http://10.1.2.3:8000/health/"),
])
def test_health_url(spec, url):
    assert health_url("http://{host}:8000/health/", parse_host(spec)) == url


def test_health_url_without_placeholder_or_twice():
    host = parse_host("ssh://web1")
    assert health_url("https://blog.example/health", host) == "https://blog.example/health"
    assert health_url("http://{host}/?h={host}", host) == "http://web1/?h=web1"


# -- option_file: the user's own file on the host, included, never read by the tool --------------------------
def test_client_options_include_the_users_file_and_stages_ini_wins(tmp_path, monkeypatch):
    from doit_stages.layout import Layout
    from doit_stages.steps.backup import client_options
    from doit_stages.transport import LocalTransport

    monkeypatch.setenv("HOME", str(tmp_path))
    user_file = tmp_path / ".my.cnf"
    user_file.write_text('[client]\nuser=someone-else\npassword="p w;#\\\\x"\n')
    user_file.chmod(0o600)
    db = mysql_db(password_env="", option_file="~/.my.cnf")
    with client_options(LocalTransport(Host("local")), Layout(str(tmp_path / "srv")), db) as cnf:
        ours = Path(cnf).read_text()
        out = subprocess.run(["my_print_defaults", f"--defaults-file={cnf}", "client"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert "p w" not in ours and ours.startswith(f"!include {user_file}\n")
    opts = dict(line[2:].split("=", 1) for line in out)        # the last of each option wins, as in mysql
    assert opts == {"user": "blog", "password": "p w;#\\x", "host": "db.example", "port": "3307"}
    assert not Path(cnf).exists()


def test_client_options_with_a_missing_option_file(tmp_path):
    from doit_stages.layout import Layout
    from doit_stages.steps.backup import client_options
    from doit_stages.steps.common import StepError
    from doit_stages.transport import LocalTransport

    db = mysql_db(password_env="", option_file=str(tmp_path / "nope.cnf"))
    with pytest.raises(StepError) as info:
        with client_options(LocalTransport(Host("local")), Layout(str(tmp_path / "srv")), db):
            pass
    assert str(info.value) == (f"[database:prod] option_file {tmp_path}/nope.cnf: no readable file on local; "
                               "put the MySQL option file there (mode 0600) or fix option_file")


def test_the_checks_run_without_the_users_pytest_environment_which_comes_back_after(monkeypatch):
    """verify runs pytest in the doit process: PYTEST_ADDOPTS / PYTEST_PLUGINS of the user's shell must not
    reach the checks, plugin autoloading is off, and afterwards the environment and sys.path are as before."""
    import sys

    from doit_stages.steps.verify import isolated
    monkeypatch.setenv("PYTEST_ADDOPTS", "-x --pdb")
    monkeypatch.setenv("PYTEST_PLUGINS", "someones_plugin")
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    path = list(sys.path)
    with isolated():
        assert "PYTEST_ADDOPTS" not in os.environ and "PYTEST_PLUGINS" not in os.environ
        assert os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
        sys.path.insert(0, "/the/checks")
    assert (os.environ["PYTEST_ADDOPTS"], os.environ["PYTEST_PLUGINS"]) == ("-x --pdb", "someones_plugin")
    assert "PYTEST_DISABLE_PLUGIN_AUTOLOAD" not in os.environ and sys.path == path
