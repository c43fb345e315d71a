"""A bad stages.ini through the real CLI, as a user meets it: `doit deploy:test` exits non-zero with ONE line
`ERROR: ...` naming the key, no traceback, and nothing made: no deploy_root, no database file, no build/.

Every stage is local and every database sqlite, so a config that got through would really deploy here."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.stages_ini import LOCAL, SQLITE, stages_ini

REPO = Path(__file__).resolve().parents[2]
DOIT = str(Path(sys.executable).with_name("doit"))

# this machine only: a config that got through would really deploy here ({root}: the test's directory)
GOOD = stages_ini(SQLITE, LOCAL, {"project": {"source": "../app              ; relative to this file",
                                              "deploy_root": "{root}/srv", "keep_releases": "3"},
                                  "database:prod": {"path": "{root}/db/prod.sqlite3"},
                                  "database:test": {"path": "{root}/db/test.sqlite3"}})

MYSQL_TEST = """\
[database:test]
engine = mysql
name = blog_test
user = blog
password_env = DST_CLI_TEST_PASSWORD
"""


def sub(old: str, new: str):
    def change(text: str) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)
    return change


def mysql_test(extra: str = ""):
    def change(text: str) -> str:
        start, end = text.index("[database:test]"), text.index("[stage:test]")
        return text[:start] + MYSQL_TEST + extra + "\n" + text[end:]
    return change


# (id, change to GOOD, what the one ERROR line must say)
CASES = [
    ("unknown-section", lambda t: t + "\n[stages:prod]\nhosts = local\n", ["[stages:prod]", "unknown section"]),
    ("unknown-key", sub("keep_releases = 3\n", "keep_releases = 3\nkeep_release = 4\n"),
     ["stages.ini:7:", "[project] keep_release", "unknown key"]),
    ("missing-source", sub("source = ../app              ; relative to this file\n", ""),
     ["[project] source", "missing"]),
    ("missing-hosts", sub("[stage:staging]\nhosts = local\n", "[stage:staging]\n"),
     ["[stage:staging] hosts", "missing"]),
    ("missing-sqlite-path", sub("path = {root}/db/prod.sqlite3\n", ""), ["[database:prod] path", "missing"]),
    ("missing-mysql-user", lambda t: mysql_test()(t).replace("user = blog\n", ""),
     ["[database:test] user", "missing"]),
    ("missing-database", sub("database = prod\npromote", "database = prd\npromote"),
     ["[stage:staging] database", "[database:prd]", "add it or fix the name"]),
    ("restore-from-missing", sub("restore_from = prod", "restore_from = production"),
     ["[stage:test] restore_from", "[database:production]", "add it or fix the name"]),
    ("promote-from-missing", sub("promote_from = test", "promote_from = tst"),
     ["[stage:staging] promote_from", "[stage:tst]", "add it or fix the name"]),
    ("promote-from-cycle", sub("restore_from = prod\n", "restore_from = prod\npromote_from = staging\n"),
     ["[stage:test] promote_from", "cycle", "break it"]),
    ("unset-password-env", mysql_test(),
     ["[database:test] password_env", "DST_CLI_TEST_PASSWORD is not set", "export"]),
    ("password-in-file", mysql_test("password = hunter2\n"), ["[database:test] password", "never write a password"]),
    ("host-web1", sub("[stage:staging]\nhosts = local", "[stage:staging]\nhosts = web1"),
     ["[stage:staging] hosts", "'web1'", "ssh://[user@]host[:port]"]),
    ("host-bad-port", sub("[stage:staging]\nhosts = local", "[stage:staging]\nhosts = ssh://h:notaport"),
     ["[stage:staging] hosts", "bad port"]),
    ("keep-releases-not-int", sub("keep_releases = 3", "keep_releases = three"),
     ["stages.ini:6:", "[project] keep_releases", "whole number"]),
    ("name-with-dot", sub("name = blog", "name = blog.v2"), ["[project] name", "'blog.v2'", "letters, digits"]),
    ("name-with-space", sub("name = blog", "name = my blog"), ["[project] name", "'my blog'"]),
    ("relative-root-ssh", lambda t: t.replace("deploy_root = {root}/srv", "deploy_root = srv").replace(
        "[stage:staging]\nhosts = local", "[stage:staging]\nhosts = ssh://deploy@web1:22"),
     ["[project] deploy_root", "absolute path"]),
    ("duplicate-links", sub("link = sites/staging", "link = sites/test"),
     ["[stage:staging] link", "already the link of stage test"]),
    ("same-host-twice", sub("[stage:staging]\nhosts = local",
                            "[stage:staging]\nhosts = ssh://deploy@web1:22, ssh://deploy@web1:22"),
     ["stages.ini:24:", "[stage:staging] hosts", "ssh://deploy@web1:22 is listed twice"]),
    ("same-host-two-names", sub("[stage:staging]\nhosts = local",
                                "[stage:staging]\nhosts = ssh://deploy@127.0.0.1:2222, ssh://deploy@localhost:2222"),
     ["stages.ini:24:", "[stage:staging] hosts", "are one host", "list it once"]),
]


def make_project(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    ini = conf / "stages.ini"
    ini.write_text(text.replace("{root}", str(tmp_path)))
    return ini


def doit(*args: str, ini: Path | None, cwd: Path = REPO, extra_env: dict | None = None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("STAGES_INI", "DEPLOY_REVISION", "DST_CLI_TEST_PASSWORD")}
    if ini is not None:
        env["STAGES_INI"] = str(ini)
    env.update(extra_env or {})
    return subprocess.run([DOIT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def assert_one_error_line(res, words) -> str:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("ERROR: "), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


DEP_FILE = ".doit-stages.sqlite3"     # doit's own dep file (written by `doit list`, not by a refused run)


def assert_nothing_made(tmp_path: Path, ini: Path, also: frozenset = frozenset()):
    assert not (tmp_path / "srv").exists(), "deploy_root was created"
    assert not (tmp_path / "db").exists(), "a database directory was created"
    assert not [p for p in tmp_path.rglob("*.sqlite3") if p.name != DEP_FILE], "a database file was created"
    assert not (ini.parent / "build").exists(), "build/ was created"
    assert not list(tmp_path.rglob("*.tar.gz"))
    # beside the ini only the project's run lock may appear (it is taken before the config is read)
    assert {p.name for p in ini.parent.iterdir()} <= {"stages.ini", ".doit-stages.lock", *also}


def test_the_good_config_is_good(tmp_path):
    """The base every case changes is accepted (so each case fails for its one change only)."""
    ini = make_project(tmp_path, GOOD)
    res = doit("list", ini=ini)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    for case_id, change, _ in CASES:
        changed = change(GOOD)
        assert changed != GOOD, case_id


@pytest.mark.parametrize("change, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_stops_deploy_before_anything(tmp_path, change, words):
    ini = make_project(tmp_path, change(GOOD))
    res = doit("deploy:test", ini=ini)
    assert_one_error_line(res, words)
    assert res.stdout == ""
    assert_nothing_made(tmp_path, ini)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_stages_ini_not_in_utf8_is_one_line(tmp_path, encoding):
    """Saved by an editor in UTF-16 or Latin-1 (a comment with an accent): one line naming the file and what
    to do, not a traceback."""
    ini = make_project(tmp_path, GOOD.replace("keep_releases = 3", "keep_releases = 3   ; trois, déjà"))
    ini.write_bytes(ini.read_text().encode(encoding))
    res = doit("deploy:test", ini=ini)
    assert_one_error_line(res, [str(ini), "not UTF-8" if encoding == "latin-1" else "UTF-16", "save it as UTF-8"])
    assert res.stdout == ""
    assert_nothing_made(tmp_path, ini)


def test_password_env_set_in_the_environment_passes_that_check(tmp_path):
    """The unset-password-env case is about the environment: with the variable set, the same file loads."""
    ini = make_project(tmp_path, mysql_test()(GOOD))
    res = doit("list", ini=ini, extra_env={"DST_CLI_TEST_PASSWORD": "p w;$(x)"})
    assert res.returncode == 0, res.stderr
    assert "p w;$(x)" not in res.stdout + res.stderr


def test_stages_ini_that_does_not_exist(tmp_path):
    res = doit("deploy:test", ini=tmp_path / "nope.ini")
    assert_one_error_line(res, ["nope.ini", "no such file", "STAGES_INI"])
    assert not (tmp_path / "build").exists()


def test_stages_ini_in_a_missing_directory(tmp_path):
    res = doit("deploy:test", ini=tmp_path / "missing" / "stages.ini")
    assert_one_error_line(res, ["stages.ini", "no such file"])


def test_relative_stages_ini_is_relative_to_where_doit_is_run(tmp_path):
    ini = make_project(tmp_path, GOOD + "bogus = 1\n")
    res = doit("-f", str(REPO / "dodo.py"), "list", ini=None, cwd=tmp_path, extra_env={"STAGES_INI": "conf/stages.ini"})
    assert_one_error_line(res, ["[stage:staging] bogus", "unknown key"])
    assert_nothing_made(tmp_path, ini)


@pytest.mark.parametrize("group", ["switch", "upload", "migrate"])
def test_bare_group_is_refused(tmp_path, group):
    ini = make_project(tmp_path, GOOD)
    res = doit(group, ini=ini)
    line = assert_one_error_line(res, [f"`doit {group}`", "every stage", f"doit {group}:<stage>"])
    assert "doit list --all" in line
    assert_nothing_made(tmp_path, ini)


def parse_list(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+)\s+(.*)$", line)
        assert m, f"not 'name  doc': {line!r}"
        out[m.group(1)] = m.group(2)
    return out


def test_doit_list_shows_the_commands_with_docs(tmp_path):
    ini = make_project(tmp_path, GOOD)
    res = doit("list", ini=ini)
    assert res.returncode == 0, res.stderr
    tasks = parse_list(res.stdout)
    assert tasks["deploy:test"].startswith("deploy: archive -> backup:prod -> upload:test -> build:test -> "
                                           "restore:test -> migrate:test -> switch:test -> verify:test")
    assert tasks["promote:staging"].startswith("promote the release of test: upload:staging")
    assert "switch:staging" in tasks["promote:staging"]
    for cmd in ("backup:prod", "restore:test", "verify:test", "verify:staging", "rollback:test",
                "rollback:staging", "unlock:test", "status"):
        assert tasks.get(cmd), f"{cmd} missing or without a doc line"
    # the nodes are not commands
    assert not {"upload:test", "switch:test", "build:test", "migrate:test"} & set(tasks)
    assert_nothing_made(tmp_path, ini, also=frozenset({DEP_FILE}))


def test_doit_list_all_shows_the_nodes(tmp_path):
    ini = make_project(tmp_path, GOOD)
    res = doit("list", "--all", ini=ini)
    assert res.returncode == 0, res.stderr
    tasks = parse_list(res.stdout)
    for node in ("archive", "upload:test", "build:test", "migrate:test", "switch:test",
                 "upload:staging", "build:staging", "migrate:staging", "switch:staging"):
        assert tasks.get(node), f"{node} missing or without a doc line"
    assert "deploy:test" in tasks and "promote:staging" in tasks
    assert tasks["switch:test"] == "sites/test -> the release on every test host"


# -- the database password: asked for by the commands that use it, not by status or list -------------------
PROD_MYSQL = mysql_test()(GOOD).replace("[database:prod]\nengine = sqlite\npath = {root}/db/prod.sqlite3\n",
                                        "[database:prod]\nengine = mysql\nname = blog_prod\nuser = blog\n"
                                        "password_env = DST_CLI_PROD_PASSWORD\nbackup_host = local\n")


@pytest.mark.parametrize("args", [("list",), ("list", "--all"), ("status",), ("-v", "2", "status"),
                                  ("unlock:test",), ("rehearsal:staging",)])
def test_commands_that_use_no_database_password_run_without_it(tmp_path, args):
    ini = make_project(tmp_path, mysql_test()(GOOD))
    res = doit(*args, ini=ini)
    assert "DST_CLI_TEST_PASSWORD" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    if args[-1] != "rehearsal:staging":   # (which fails for want of a release, not of a password)
        assert res.returncode == 0, res.stderr
    if args[-1] == "status":
        assert "test" in res.stdout and "staging" in res.stdout, res.stdout


@pytest.mark.parametrize("args, variable", [
    (("deploy:test",), "DST_CLI_TEST_PASSWORD"),
    (("-v", "2", "promote:staging"), "DST_CLI_PROD_PASSWORD"),
    (("backup:prod",), "DST_CLI_PROD_PASSWORD"),
    (("restore:test",), "DST_CLI_TEST_PASSWORD"),
    (("build:staging",), "DST_CLI_PROD_PASSWORD"),
    (("status", "rollback:staging"), "DST_CLI_PROD_PASSWORD"),
])
def test_a_command_that_needs_a_password_fails_at_once_naming_the_variable(tmp_path, args, variable):
    ini = make_project(tmp_path, PROD_MYSQL)
    res = doit(*args, ini=ini)
    assert_one_error_line(res, [f"{variable} is not set", "password_env", "export it"])
    assert res.stdout == ""
    assert_nothing_made(tmp_path, ini)


def test_a_command_with_its_password_set_goes_on_without_the_other_databases(tmp_path):
    """backup:prod needs prod's password only: with it set it gets past the load (and fails later, at the
    unreachable server, for another reason than a password variable)."""
    ini = make_project(tmp_path, PROD_MYSQL)
    res = doit("backup:prod", ini=ini, extra_env={"DST_CLI_PROD_PASSWORD": "p"})
    assert "is not set" not in res.stderr, res.stderr


def test_deploy_of_a_promoted_stage_says_promote(tmp_path):
    ini = make_project(tmp_path, GOOD)
    res = doit("deploy:staging", ini=ini)
    assert_one_error_line(res, ["deploy:staging", "promoted from test", "run doit promote:staging"])
    assert_nothing_made(tmp_path, ini)
