"""steps/archive.py's check of each tar member on plain inputs: names, kinds and link targets refused or let through
(the archive made from real git and hg repositories: tests/integration/test_archive.py)."""
from __future__ import annotations

import pytest

from doit_stages.steps.archive import member_problem


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
