"""The fault matrix (issue #10): for deploy:test, promote:staging and promote:prod, at every failpoint on the
command's path, each fault kind (the deployer SIGKILLed, the step failing, one host going down; see
tests/lab/faults.py). Afterwards every link is on its old release or on the new one switched fully, and a
switch left unfinished is under an intent; production is untouched or migrated after a verified "before"
backup. Then the next plain run finishes: the new release live everywhere with reload, health check and
release-log record, production's migration between a verified "before" and "after" backup named in the
record, no database option file, dump or password left in .deploy/, `doit status` agreeing with the links;
and `doit rollback:<stage>` goes back to the previous release and status agrees again.

The live-switch cells (issue #16): a second checkout runs `doit unlock:<stage>` while the run is paused at
each switch failpoint of promote:prod (refused: the run goes on and settles), or `--force` (the run loses its
lock and its sessions, says what each host runs, keeps its intents; the next run finishes), and every
session of one host is killed while its reload runs, for each command (the run says what is true; the next
run finishes).

Real sshd hosts, real MariaDB, real Django migrations, one lab for the module: a cell starts from the state
the previous one left (the old release live, the new one rolled back from), so most cells deploy nothing
from scratch. Marked `faultmatrix`: `./scripts/test -m "not faultmatrix"` is the quick loop."""
from __future__ import annotations

import pytest

from doit_stages import failpoints
from tests.integration.faultcheck import (
    baseline,
    check_claims,
    check_leftovers,
    check_links_after_fault,
    check_production,
    check_rollback,
    check_settled,
    check_status,
    check_unlock,
    intent,
)
from tests.lab.faults import TAG_MIGRATION, Cell, Lab

pytestmark = pytest.mark.faultmatrix

SWITCH = ["switch.after_intent", "switch.after_rename", "switch.after_reload", "switch.before_log",
          "switch.after_log"]
# The failpoints each command passes, in order: checked against a traced run by the first test below.
APPLICABLE = {
    "deploy:test": ["upload.mid_transfer", "build.after_unpack", "restore.before_load", *SWITCH],
    "promote:staging": ["build.after_unpack", "migrate.after_backup_before", "migrate.after_migrate",
                        "migrate.before_backup_after", *SWITCH],
    "promote:prod": ["build.after_unpack", *SWITCH],
}
# Why a failpoint is on no path of a command (no cell for it there).
NOT_ON_PATH = {
    ("promote:staging", "upload.mid_transfer"): "the stages share their hosts: test's upload already put the "
                                                "archive there (upload:staging is up to date)",
    ("promote:prod", "upload.mid_transfer"): "likewise",
    ("deploy:test", "migrate.after_backup_before"): "migrate:test rehearses on a copy: no production backup",
    ("deploy:test", "migrate.after_migrate"): "likewise",
    ("deploy:test", "migrate.before_backup_after"): "likewise",
    ("promote:prod", "migrate.after_backup_before"): "prod shares staging's database: no migrate:prod node",
    ("promote:prod", "migrate.after_migrate"): "likewise",
    ("promote:prod", "migrate.before_backup_after"): "likewise",
    ("promote:staging", "restore.before_load"): "only a stage with restore_from restores",
    ("promote:prod", "restore.before_load"): "likewise",
    ("deploy:test", "migrate.before_restore"): "only a failed migration of production is restored in place "
                                               "(test_integration_migration_record.py kills there)",
    ("promote:staging", "migrate.before_restore"): "likewise: the matrix's migrations succeed",
    ("promote:prod", "migrate.before_restore"): "likewise",
}
# Passed once per host (armed for the victim only) rather than once per run.
HOSTED = {"upload.mid_transfer", "build.after_unpack", "restore.before_load", "switch.after_rename",
          "switch.after_reload", "switch.after_log"}
# The host a fault hits (0 web1, 1 web2): the one the run works on next. restore:test loads on web1 (the test
# database's backup host); production's migration runs on web1 and its backups are made on web2.
VICTIM = {"restore.before_load": 0, "migrate.after_backup_before": 0}
# Cells of deploy:test at these points need a revision never deployed (else the step is up to date).
FRESH = {"upload.mid_transfer", "build.after_unpack", "restore.before_load"}
KINDS = ("kill", "raise", "host")

CELLS = [Cell(cmd, point, kind, point in HOSTED, VICTIM.get(point, 1))
         for cmd, points in APPLICABLE.items() for point in points for kind in KINDS]
# a second run beside the switch: unlock (refused, or forced) during each phase of promote:prod's switch, and
# one host's sessions killed during the reload of each command
LIVE_CELLS = [Cell("promote:prod", point, kind, point in HOSTED, 1) for point in SWITCH
              for kind in ("unlock", "force")] + [Cell(cmd, "reload", "sessions", True, 1) for cmd in APPLICABLE]


@pytest.fixture(scope="module")
def lab(blog_world, tmp_path_factory):
    lab = Lab(blog_world, tmp_path_factory.mktemp("faultlab"))
    for command in APPLICABLE:       # the first release on every stage: the whole path of each command
        lab.traced_run(command)
    yield lab
    lab.health.stop()


def test_the_cells_cover_every_failpoint_on_each_path(lab):
    for command, points in APPLICABLE.items():
        passed = list(dict.fromkeys(name for name, _ in lab.traced[command]))
        assert passed == points, f"{command} passed {passed}; update APPLICABLE and NOT_ON_PATH"
        for name, host in lab.traced[command]:
            assert (host != "-") == (name in HOSTED), f"{command}: {name} on host {host}: update HOSTED"
    for name in failpoints.NAMES:
        for command in APPLICABLE:
            assert (name in APPLICABLE[command]) != ((command, name) in NOT_ON_PATH), (command, name)
    assert len(CELLS) == 3 * sum(len(p) for p in APPLICABLE.values()) == 69


def prepare(lab: Lab, cell: Cell) -> tuple[str, str]:
    """Bring the lab to: the stage on an old release, the command about to ship a new one. Cheap when the
    previous cell left what it should (the old release live, the new one rolled back from)."""
    p = lab.p
    for h in lab.hosts:
        h.start()
    for stage in ("test", "staging", "prod"):   # a cell that failed may have left a stage unsettled
        if lab.live(stage) is None or any(intent(h, stage) for h in lab.hosts):
            p.ok("deploy:test" if stage == "test" else f"promote:{stage}")
    if cell.command == "deploy:test":
        if cell.point in FRESH or lab.head_release() == lab.live("test"):
            lab.commit(f"c{len(lab.p.log(lab.hosts[0]))}")
        return lab.live("test"), lab.head_release()
    if cell.command == "promote:staging":
        if lab.migrating is None:
            lab.save_prod()
            lab.migrating = lab.commit("tag", {"posts/migrations/0004_tag.py": TAG_MIGRATION})
        if lab.live("test") != lab.migrating:
            p.ok("deploy:test")
        if lab.live("staging") == lab.migrating:
            p.ok("rollback:staging")
        if cell.point.startswith("migrate."):
            lab.reset_prod()
        return lab.live("staging"), lab.migrating
    if lab.live("staging") == lab.live("prod"):
        if lab.live("test") == lab.live("prod"):
            lab.commit("p")
            p.ok("deploy:test")
        p.ok("promote:staging")
    return lab.live("prod"), lab.live("staging")


def fault_outcome(lab: Lab, cell: Cell, res) -> list[str]:
    """The faulted run itself: killed, or failed with one line naming the failpoint or the host."""
    if cell.kind == "kill":
        return [] if res.returncode == -9 else [f"the run was not killed (exit {res.returncode}): {res.stderr}"]
    said = f"failpoint {cell.point} armed to fail" if cell.kind == "raise" else \
        lab.hosts[cell.victim].url.split("@")[1]
    if res.returncode in (0, -9) or "Traceback" in res.stderr or said not in res.stderr:
        return [f"the faulted run exited {res.returncode} without an error naming {said!r}: {res.stderr[-600:]}"]
    return []


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_fault_cell(lab, cell):
    import time

    old, new = prepare(lab, cell)
    assert old != new and lab.live(cell.stage) == old, (old, new, lab.links(cell.stage))
    base = baseline(lab, cell, old, new, time.time())
    res = lab.run_faulty(cell)
    problems = fault_outcome(lab, cell, res) + check_links_after_fault(lab, base) + \
        check_production(lab, base, settled=False)
    if cell.kind == "raise":     # a run that ends by itself removes its own temporary files
        problems += check_leftovers(lab)
    rerun = lab.p.doit(cell.command, "status")    # the plain next run, then the status table
    if rerun.returncode != 0:
        problems.append(f"the next run exited {rerun.returncode}: {rerun.stderr.strip()[-600:]}")
    else:
        problems += check_settled(lab, base) + check_leftovers(lab) + check_production(lab, base, settled=True) \
            + check_status(lab, rerun, cell.stage, new) + check_rollback(lab, base)
    assert not problems, f"{cell.id}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("cell", LIVE_CELLS, ids=[c.id for c in LIVE_CELLS])
def test_live_switch_cell(lab, cell):
    import time

    old, new = prepare(lab, cell)
    assert old != new and lab.live(cell.stage) == old, (old, new, lab.links(cell.stage))
    base = baseline(lab, cell, old, new, time.time())
    res, unlock = lab.run_beside(cell)
    problems = [] if cell.kind == "sessions" else check_unlock(lab, cell, unlock, res)
    if "Traceback" in res.stderr:
        problems.append(f"a traceback: {res.stderr[-600:]}")
    if cell.kind == "unlock":       # the run went on as if nothing happened: settled by itself
        if res.returncode != 0:
            problems.append(f"the run exited {res.returncode} after a refused unlock: {res.stderr.strip()[-600:]}")
        problems += check_settled(lab, base) + check_leftovers(lab)
    else:
        if res.returncode == 0 and cell.kind == "force":
            problems.append(f"the run that lost its lock exited 0: {res.stdout[-400:]}")
        problems += check_claims(lab, base, res) + check_links_after_fault(lab, base) + \
            check_production(lab, base, settled=False)
    rerun = lab.p.doit(cell.command, "status")
    if rerun.returncode != 0:
        problems.append(f"the next run exited {rerun.returncode}: {rerun.stderr.strip()[-600:]}")
    else:
        problems += check_settled(lab, base) + check_leftovers(lab) + check_production(lab, base, settled=True) \
            + check_status(lab, rerun, cell.stage, new) + check_rollback(lab, base)
    assert not problems, f"{cell.id}:\n  " + "\n  ".join(problems)
