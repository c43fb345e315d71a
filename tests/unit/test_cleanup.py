"""steps/cleanup.py's choice on plain inputs: what the links and the release log keep, what goes."""
from __future__ import annotations

from doit_stages.steps.cleanup import releases_to_remove
from doit_stages.steps.releaselog import rollback_target
from tests.lab.releases import rec, rid


def test_cleanup_keeps_linked_and_newest_good_per_stage():
    r = [rid(i) for i in range(10)]
    existing = r + ["tmp", "blog-junk", f"{r[0]}.tmp"]
    log = [rec("prod", r[i], "ok") for i in (0, 1, 2, 3, 4)] + [rec("test", r[i], "ok") for i in (5, 6, 7)]
    doomed = releases_to_remove(existing, linked={r[1]}, log=log, keep=2)
    # prod keeps r3, r4; test keeps r6, r7; r1 is linked; r8, r9 were never switched; non-ids are not touched
    assert doomed == sorted([r[0], r[2], r[5], r[8], r[9]])


def test_cleanup_counts_a_release_once_and_ignores_failed_switches():
    r = [rid(i) for i in range(5)]
    log = [rec("prod", r[0], "ok"), rec("prod", r[1], "ok"), rec("prod", r[2], "failed"), rec("prod", r[1], "ok")]
    assert releases_to_remove(r, linked=set(), log=log, keep=2) == sorted([r[2], r[3], r[4]])
    # keep=1 still keeps r0: it is what rollback would return to (invariant 6)
    assert releases_to_remove(r, linked={r[3]}, log=log, keep=1) == sorted([r[2], r[4]])


def test_cleanup_keeps_the_release_of_a_stages_last_switch_when_it_failed():
    """The undone switch's release (with its venv and artifact) stays for the rerun after the fix; once the
    stage switched again it goes. A first deploy that failed has nothing else in the log."""
    r = [rid(i) for i in range(4)]
    first = [rec("test", r[0], "failed")]
    assert releases_to_remove(r[:1], linked=set(), log=first, keep=3) == []
    log = [rec("test", r[0], "ok"), rec("prod", r[0], "ok"), rec("test", r[1], "failed"), rec("prod", r[2], "failed")]
    assert releases_to_remove(r, linked={r[0]}, log=log, keep=3) == [r[3]]
    log += [rec("test", r[3], "ok")]
    assert releases_to_remove(r, linked={r[3]}, log=log, keep=3) == [r[1]]


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
