"""runtime/known_links.py: what a run knows of a host's links, only while it holds the host's lock."""
from __future__ import annotations

from doit_stages.config import Host
from doit_stages.runtime.known_links import KnownLinks

A = Host("ssh://deploy@a.example:22", "a.example", "deploy", 22)
B = Host("ssh://deploy@b.example:22", "b.example", "deploy", 22)


def test_nothing_is_known_of_a_host_whose_lock_the_run_does_not_hold():
    known = KnownLinks()
    known.remember(A, "sites/test", "../releases/x")
    assert known.get(A, "sites/test") == (False, None)


def test_a_link_read_or_written_under_the_lock_is_known_until_the_lock_goes():
    known = KnownLinks()
    known.hold(A)
    known.remember(A, "sites/test", "../releases/x")
    known.remember(A, "sites/current", None)
    assert known.get(A, "sites/test") == (True, "../releases/x")
    assert known.get(A, "sites/current") == (True, None)          # known to be missing
    assert known.get(B, "sites/test") == (False, None)            # per host
    known.drop(A)
    assert known.get(A, "sites/test") == (False, None)


def test_a_link_being_moved_or_an_odd_target_is_not_known():
    known = KnownLinks()
    known.hold(A)
    known.remember(A, "sites/test", "../releases/x")
    known.forget(A, "sites/test")
    assert known.get(A, "sites/test") == (False, None)
    known.remember(A, "sites/test", "../releases/x\n../releases/y")   # a reader would see two lines
    known.remember(A, "sites/staging", " ../releases/x")
    assert known.get(A, "sites/test") == known.get(A, "sites/staging") == (False, None)


def test_a_new_connection_under_the_lock_starts_from_nothing():
    known = KnownLinks()
    known.hold(A)
    known.remember(A, "sites/test", "../releases/x")
    known.hold(A)
    assert known.get(A, "sites/test") == (False, None)


def test_what_the_run_last_saw_outlives_the_lock_for_its_report_but_not_a_move():
    known, host = KnownLinks(), Host("ssh://deploy@web1")
    known.hold(host)
    known.remember(host, "sites/test", "../releases/a")
    known.drop(host)                                    # the lock let go early (with verify's record)
    assert known.get(host, "sites/test") == (False, None)          # never a reason to skip a read
    assert known.last_seen(host, "sites/test") == (True, "../releases/a")
    known.hold(host)
    known.forget(host, "sites/test")                    # being moved: unknown until done
    assert known.last_seen(host, "sites/test") == (False, None)
