"""The rule for leftovers of dead runs (runtime/leftovers.py): whose a leftover is, and which go, on plain
names and listings."""
from __future__ import annotations

from doit_stages.runtime.leftovers import dead_leftovers, owner_of, parse_listing


def test_owner_is_read_from_each_kind_of_name():
    assert owner_of("/srv/blog/.deploy/cnf.laptop.17.Ab3xYz") == ("laptop", 17)
    assert owner_of("/srv/blog/.deploy/incoming/ci-runner-7.99.blog-prod-x.sql.gz") == ("ci-runner-7", 99)
    assert owner_of("/srv/blog/db_backup/.laptop.5.blog-prod-20261127T101010.123Z.sql.gz.partial") == ("laptop", 5)
    assert owner_of("/srv/blog/.deploy/cnf.Ab3xYz") is None          # made by an older version
    assert owner_of("/srv/blog/db_backup/.blog-prod-20261127T101010.123Z.sql.gz.partial") is None


def test_leftovers_of_dead_runs_go_and_of_live_runs_stay():
    paths = ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/cnf.laptop.18.b", "/r/.deploy/cnf.laptop.4242.c",
             "/r/.deploy/cnf.ci-9.5.d", "/r/.deploy/cnf.old", "/r/.deploy/incoming/laptop.17.f.sql.gz"]
    alive = {18, 4242}.__contains__
    ours = {"machine": "laptop.example.org", "pid": 4242}
    # this run does not hold the lock: only this machine's dead pids
    assert dead_leftovers(paths, None, ME, "laptop.example.org", alive) == \
        ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/incoming/laptop.17.f.sql.gz"]
    assert dead_leftovers(paths, {"machine": "ci-9", "pid": 5}, ME, "laptop.example.org", alive) == \
        ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/incoming/laptop.17.f.sql.gz"]
    # it holds the lock: another machine's and an old version's go too; never a live pid here, never its own
    assert dead_leftovers(paths, ours, ME, "laptop.example.org", alive) == \
        ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/cnf.ci-9.5.d", "/r/.deploy/cnf.old",
         "/r/.deploy/incoming/laptop.17.f.sql.gz"]


def test_parse_listing():
    assert parse_listing('{"pid": 1}\n--\n/a\n/b\n') == ({"pid": 1}, ["/a", "/b"])
    assert parse_listing("\n--\n") == (None, [])
    assert parse_listing("junk\n--\n/a\n") == (None, ["/a"])


# -- leftovers of dead runs ----------------------------------------------------------------------------
ME = ("laptop", 4242)
