"""tasks/layout.py: release ids and backup names, and every path on a host (the one module that names them)."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from doit_stages.layout import Layout, backup_name, is_release_id, release_id
from tests.lab.releases import rid

REV = "0123456789abcdef0123456789abcdef01234567"


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
    assert lay.stage_dirs("test") == "/srv/blog/shared/test"
    assert lay.stage_dir("test", r) == f"/srv/blog/shared/test/{r}"
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
