"""tasks/steps/buildout.py's pure parts: buildout configs and their extends chains read as buildout reads
them, the pins turned into `pip wheel` calls, the buildout argv, buildout's errors in one line. No host, no
network (the bin/ dispatchers, run with sh: tests/integration/test_buildout.py)."""
from __future__ import annotations

import pytest

from doit_stages.config import Config, Host, Project, Stage
from doit_stages.errors import StepError
from doit_stages.layout import Layout
from doit_stages.steps.buildout import buildout_argv, configs_of, failure_line
from doit_stages.steps.buildout_pins import buildout_version, load_cfg, parse_cfg, versions_of, wheel_batches

BASE = """\
# a comment
[buildout]
parts = django
extends = versions.cfg
show-picked-versions = true

[django]
recipe = djangorecipe
settings = settings.test   # stays in the value, as in buildout
eggs =
    Django
    mysql-connector-python

[versions]
Django = 5.2.19
"""
VERSIONS = """\
[versions]
zc.buildout = 6.0.1
Django = 4.2.0
sqlparse = 0.6.1
"""
PROD = """\
[buildout]
extends = ../buildout.cfg
[django]
settings = settings.prod
[versions]
sqlparse = 0.6.2
"""


def reader(files: dict[str, str]):
    return files.get


def test_parse_cfg_reads_continuations_comments_and_conditional_sections():
    cfg = parse_cfg(BASE + "[versions:python27]\nsix = 1.0\n", "buildout.cfg")
    assert cfg["django"]["eggs"] == "Django\nmysql-connector-python"
    assert cfg["django"]["settings"] == "settings.test   # stays in the value, as in buildout"
    assert cfg["buildout"]["extends"] == "versions.cfg"
    assert cfg["versions:python27"] == {"six": "1.0"}


def test_parse_cfg_refuses_a_line_it_cannot_read():
    with pytest.raises(StepError, match=r"buildout.cfg:2: buildout cannot read this line: 'what is this'"):
        parse_cfg("[buildout]\nwhat is this\n", "buildout.cfg")


def test_extends_chain_later_files_win_and_paths_are_relative_to_the_extending_file():
    files = {"buildout.cfg": BASE, "versions.cfg": VERSIONS, "deploy/prod.cfg": PROD}
    assert versions_of(reader(files), "buildout.cfg") == {"zc.buildout": "6.0.1", "Django": "5.2.19",
                                                          "sqlparse": "0.6.1"}
    prod = load_cfg(reader(files), "deploy/prod.cfg")
    assert prod["django"]["settings"] == "settings.prod" and prod["django"]["recipe"] == "djangorecipe"
    assert versions_of(reader(files), "deploy/prod.cfg")["sqlparse"] == "0.6.2"
    assert "extends" not in prod["buildout"]


def test_versions_section_named_by_buildout_versions_and_optional_extends():
    files = {"b.cfg": "[buildout]\nversions = pins\noptional-extends = local.cfg gone.cfg\n[pins]\nsix = 1.16.0\n",
             "local.cfg": "[pins]\nattrs = 23.1.0\n"}
    assert versions_of(reader(files), "b.cfg") == {"six": "1.16.0", "attrs": "23.1.0"}


@pytest.mark.parametrize("files, words", [
    ({"b.cfg": "[buildout]\nextends = https://dist.plone.org/versions.cfg\n"}, "outside the release (the hosts"),
    ({"b.cfg": "[buildout]\nextends = /etc/v.cfg\n"}, "outside the release"),
    ({"b.cfg": "[buildout]\nextends = ../v.cfg\n"}, "outside the release; move it inside"),
    ({"b.cfg": "[buildout]\nextends = a.cfg\n", "a.cfg": "[buildout]\nextends = b.cfg\n"}, "extends itself"),
    ({"b.cfg": "[buildout]\nextends = missing.cfg\n"}, "missing.cfg is not in the release"),
    ({"b.cfg": "[versions]\nsix += 1\n"}, "is not a plain pin"),
    ({"b.cfg": "[versions]\nsix = ${x:y}\n"}, "is not a plain pin"),
    ({"b.cfg": "[versions]\nsix = 1.0\n[versions:python3]\nsix = 2.0\n"}, "conditional [versions:...]"),
])
def test_configs_buildout_could_not_run_offline_are_refused(files, words):
    with pytest.raises(StepError) as info:
        versions_of(reader(files), "b.cfg")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_wheel_batches_one_name_once_per_pip_call():
    pins = [("Django", "5.2.19"), ("sqlparse", "0.6.1"), ("SQLParse", "0.6.2"), ("django", "5.2.19")]
    assert wheel_batches(pins) == [["Django==5.2.19", "sqlparse==0.6.1"], ["SQLParse==0.6.2"]]


def test_buildout_version_must_be_pinned_once():
    assert buildout_version({"a.cfg": {"zc_buildout": "6.0.1"}, "b.cfg": {"zc.buildout": "6.0.1"}}) == "6.0.1"
    with pytest.raises(StepError, match="does not pin zc.buildout; add e.g. zc.buildout = 6.0.1"):
        buildout_version({"buildout.cfg": {"Django": "5.2.19"}})
    with pytest.raises(StepError, match=r"different zc.buildout versions \(6.0.0, 6.0.1\)"):
        buildout_version({"a.cfg": {"zc.buildout": "6.0.1"}, "b.cfg": {"zc.buildout": "6.0.0"}})


def test_buildout_argv_points_everything_at_the_wheelhouse_and_the_stage_part():
    argv = buildout_argv(Layout("/srv/blog"), "r1", "prod", "deploy/prod.cfg", "/srv/blog/.deploy/wheels/ab")
    rel = "/srv/blog/releases/r1"
    assert argv == [
        "env", "PIP_NO_INDEX=1", "PIP_FIND_LINKS=/srv/blog/.deploy/wheels/ab", "PIP_DISABLE_PIP_VERSION_CHECK=1",
        f"{rel}/.venv/bin/buildout", "-U", "-c", f"{rel}/deploy/prod.cfg",
        "buildout:index=/srv/blog/.deploy/wheels/ab", "buildout:find-links=/srv/blog/.deploy/wheels/ab",
        "buildout:newest=false", "buildout:allow-picked-versions=false", "buildout:offline=false",
        f"buildout:eggs-directory={rel}/.buildout/eggs", f"buildout:bin-directory={rel}/.buildout/prod/bin",
        f"buildout:parts-directory={rel}/.buildout/prod/parts",
        f"buildout:develop-eggs-directory={rel}/.buildout/prod/develop-eggs",
        f"buildout:installed={rel}/.buildout/prod/.installed.cfg"]


MISSING = """\
root: Not found: /srv/blog/.deploy/wheels/ab/six/
Getting distribution for 'six'.
/x/easy_install.py:759: UserWarning: Module zc was already imported from None
  ws.add(dist)
While:
  Installing django.
  Getting distribution for 'six'.
Error: Couldn't find a distribution for 'six'.
"""


@pytest.mark.parametrize("out, err, line", [
    ("", MISSING, "six is not in the wheelhouse (buildout: Couldn't find a distribution for 'six'.); pin it in "
                  "[versions] of buildout.cfg and run again (the wheelhouse holds what [versions] pins)"),
    ("Installing.\n", "Error: Couldn't find a distribution for 'attrs==23.1.0'.\n", "attrs is not in the wheelhouse"),
    ("", "While:\n  Installing.\nError: Picked: six = 1.16.0\n",
     "six is not pinned in [versions] of buildout.cfg; add six = 1.16.0"),
    ("", "Error: The specified config file doesn't exist\n", "The specified config file doesn't exist"),
    ("last words\n", "", "last words"),
    ("", "", "?"),
])
def test_failure_line(out, err, line):
    got = failure_line(out, err, "buildout.cfg")
    assert got.startswith(line) and "\n" not in got


def test_configs_of_every_stage_once(tmp_path):
    stage = Stage("test", (Host("local"),), "sites/test")
    cfg = Config(tmp_path / "stages.ini", Project("blog", tmp_path, build="buildout"),
                 stages={"test": stage, "staging": Stage("staging", (Host("local"),), "sites/staging",
                                                         buildout_config="prod.cfg"),
                         "prod": Stage("prod", (Host("local"),), "sites/current", buildout_config="prod.cfg")})
    assert configs_of(cfg) == ("buildout.cfg", "prod.cfg")


# -- eggs nobody pinned ----------------------------------------------------------------------------------
ENV311 = {"implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
          "platform_machine": "x86_64", "platform_release": "6.1", "platform_system": "Linux", "platform_version": "1",
          "python_full_version": "3.11.2", "platform_python_implementation": "CPython", "python_version": "3.11",
          "sys_platform": "linux"}


def test_egg_roots_are_recipes_eggs_and_extensions():
    from doit_stages.steps.buildout_pins import egg_roots
    cfg = parse_cfg("[buildout]\nparts = django test\nextensions = mr.developer\n[django]\nrecipe = djangorecipe\n"
                    "eggs =\n    Django\n    ${buildout:eggs}\n    celery[redis] >= 5  # the queue\n"
                    "[test]\nrecipe = zc.recipe.egg:scripts\neggs = pytest\n[unused]\nrecipe = nope\n", "b.cfg")
    assert egg_roots(cfg) == [("mr.developer", "[buildout] extensions"), ("djangorecipe", "the recipe of [django]"),
                              ("Django", "[django] eggs"), ("celery[redis] >= 5", "[django] eggs"),
                              ("zc.recipe.egg", "the recipe of [test]"), ("pytest", "[test] eggs")]


def test_unpinned_eggs_are_found_through_the_pinned_ones_requirements_with_markers_and_extras():
    from doit_stages.steps.buildout_pins import unpinned_eggs
    deps = {"djangorecipe": ["zc.buildout", "zc.recipe.egg", "Django"],
            "django": ["asgiref>=3.8", "sqlparse", 'tzdata; sys_platform == "win32"'],
            "celery": ["kombu", 'redis>=4; extra == "redis"', 'exceptiongroup; python_version < "3.11"'],
            "zc-recipe-egg": ["zc.buildout>=3", "setuptools"]}
    pins = {"djangorecipe": "2.2.1", "Django": "5.2", "asgiref": "3.8", "zc.buildout": "6.0", "celery": "5.4",
            "zc.recipe.egg": "6.0", "setuptools": "80"}
    roots = [("djangorecipe", "the recipe of [django]"), ("celery[redis]", "[django] eggs"), ("blog", "[django] eggs")]
    found = unpinned_eggs(roots, pins, lambda n: deps.get(n, []), ENV311, skip={"blog"})
    assert found == {"sqlparse": "Django", "kombu": "celery", "redis": "celery"}


def test_develop_egg_names_are_read_without_running_them():
    from doit_stages.steps.buildout_pins import develop_names
    files = {"pyproject.toml": '[build-system]\nrequires = []\n[project]\nname = "Blog_App"\n',
             "libs/a/setup.cfg": "[metadata]\nname = lib-a\n", "libs/b/setup.py": "setup(name='lib.b')\n"}
    cfg = {"buildout": {"develop": ". libs/a libs/b libs/none"}}
    assert develop_names(cfg, files.get) == {"blog-app", "lib-a", "lib-b"}
