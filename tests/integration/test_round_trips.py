"""How many exchanges (serial round trips) a deploy sends over each host's framed session (issue 22): the
checks' reads ride with the lock's take, a check's answer serves its own action, the build's and the
switch's writes go as few exchanges, verify's facts ride with the switch's last one and the lock's release
with verify's record. Counted by bench/_doit_probe.py around tasks/remote_shell.RemoteShell._exchange (a
count, not a timing), beside the real effects on two real sshd hosts: code only, no database."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lab.project import PASSWORD_ENV, REPO
from tests.lab.stages_ini import CODE_ONLY
from tests.lab.world import open_world

PROBE = REPO / "bench" / "_doit_probe.py"
CODE = {"project": {"build": "none"}}
STAGING = {"stage:staging": {"hosts": "{hosts}", "link": "sites/staging", "promote_from": "test",
                             "+": "{prod_stage_extra}"}}


@pytest.fixture(scope="module")
def world(ssh_hosts, mariadb, tmp_path_factory):
    with open_world(mariadb, ssh_hosts, tmp_path_factory.mktemp("trips"), changes=[CODE_ONLY, CODE, STAGING]) as world:
        yield world


def exchanges(p, tmp_path, *args: str) -> dict[str, int]:
    """doit ARGS, run through the probe: {host port: commands exchanged over its session}."""
    out = tmp_path / "probe.json"
    env = {**os.environ, "STAGES_INI": str(p.ini), PASSWORD_ENV: p.password, "BENCH_PROBE_OUT": str(out)}
    res = subprocess.run([sys.executable, str(PROBE), "-f", str(REPO / "dodo.py"), *args], cwd=p.workdir, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    per: dict[str, int] = {}
    hellos = 0
    for node in json.loads(out.read_text())["nodes"].values():
        for phase in node.get("exchanges", {}).values():
            for port, (commands, alone) in phase.items():
                per[port] = per.get(port, 0) + commands
                hellos += alone
    # no session waited for its shell's hello alone: its first command went behind it (RemoteShell.greet)
    assert hellos == 0, out.read_text()
    return per


def log_of(host) -> list[dict]:
    return [json.loads(x) for x in host.path("/srv/blog/.deploy/releases.jsonl").read_text().splitlines()]


def state_files(host) -> dict:
    deploy = host.path("/srv/blog/.deploy")
    return {"lock": (deploy / "lock").exists(), "intents": sorted(x.name for x in deploy.glob("intent-*"))}


def test_a_cold_deploy_of_two_hosts(world, tmp_path):
    p, hosts = world["project"], world["hosts"]
    per = exchanges(p, tmp_path, "deploy:test")
    rid = p.link(hosts[0]).rsplit("/", 1)[1]
    for h in hosts:
        assert p.link(h) == f"../releases/{rid}"
        assert log_of(h)[-1]["release"] == rid and log_of(h)[-1]["result"] == "ok"
        assert state_files(h) == {"lock": False, "intents": []}
    # per host: the take with every check's reads; the archive (small: inside the command's text) with the
    # build's and the later checks' reads; the build's unpack + stage files (+ the switch's reads); the
    # intent; the rename; the records; the intent's removal with the cleanup's scan (+ verify's facts);
    # verify's record with the lock's release. Before issue 22's work: 21 a host.
    assert sorted(per.values()) == [8, 8], per


def test_a_no_op_rerun_is_two_exchanges_a_host(world, tmp_path):
    p, hosts = world["project"], world["hosts"]
    logs = [log_of(h) for h in hosts]
    per = exchanges(p, tmp_path, "deploy:test")
    # the take with every check's reads (upload, build, switch, verify's facts), then verify's record with
    # the lock's release. Before: 7 a host (the take, four reads, the record, the release).
    assert sorted(per.values()) == [2, 2], per
    assert [log_of(h) for h in hosts] == logs
    assert all(state_files(h) == {"lock": False, "intents": []} for h in hosts)


def test_a_stage_of_one_host_switches_in_one_exchange(world, tmp_path):
    """No reload, hook or health check between the rename and the record: the intent, the rename, the
    record, the intent's removal and the cleanup's scan (+ verify's facts) go as one exchange."""
    p, repo, (web1, web2) = world["project"], world["repo"], world["hosts"]
    p.write(test_hosts=web1.url)
    try:
        repo.commit("a change", {"round_trips.txt": "1\n"})
        before = p.link(web2)
        per = exchanges(p, tmp_path, "deploy:test")
        rid = p.link(web1).rsplit("/", 1)[1]
        assert p.link(web1) == f"../releases/{rid}" and p.link(web2) == before   # web2 is no host of test now
        last = log_of(web1)[-1]
        assert (last["release"], last["result"]) == (rid, "ok")
        assert state_files(web1) == {"lock": False, "intents": []}
        assert list(per.values()) == [5], per                  # 7 when the record went in an exchange of its own
        assert len([r for r in log_of(web1) if r["release"] == rid]) == 1
    finally:
        p.write(test_hosts=", ".join(h.url for h in world["hosts"]))


def test_a_promotion_reads_ahead_for_the_newest_archive(world, tmp_path):
    """promote:staging of the release test runs, the newest archive here: the chain's reads for it go with
    the lock's take and the source's link and verify record (kept by their argv, used once the link names
    that release)."""
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    repo.commit("a change to promote", {"round_trips.txt": "2\n"})
    p.ok("deploy:test")
    rid = p.link(hosts[0]).rsplit("/", 1)[1]
    per = exchanges(p, tmp_path, "promote:staging")
    for h in hosts:
        assert p.link(h, "sites/staging") == f"../releases/{rid}"
        assert (log_of(h)[-1]["stage"], log_of(h)[-1]["release"], log_of(h)[-1]["result"]) == ("staging", rid, "ok")
        assert state_files(h) == {"lock": False, "intents": []}
    # the take with the source's reads and the chain's; the stage's files; intent; rename; records; the
    # intent's removal with the scan (+ facts); verify's record with the lock's release
    assert sorted(per.values()) == [7, 7], per


def test_a_promotion_of_another_release_than_the_newest_archive(world, tmp_path):
    """The newest archive here is not what test runs: the reads sent ahead for it are never taken for the
    promoted release's (it costs the exchange that reads them)."""
    p, repo, hosts = world["project"], world["repo"], world["hosts"]
    repo.commit("a change for test", {"round_trips.txt": "3\n"})
    p.ok("deploy:test")
    rid = p.link(hosts[0]).rsplit("/", 1)[1]
    repo.commit("a change not deployed", {"round_trips.txt": "4\n"})
    p.ok("archive")
    newest = max((p.workdir / "build").glob("*.tar.gz"), key=lambda f: f.stat().st_mtime).name
    assert not newest.startswith(rid)
    per = exchanges(p, tmp_path, "promote:staging")
    for h in hosts:
        assert p.link(h, "sites/staging") == f"../releases/{rid}"
        assert (log_of(h)[-1]["stage"], log_of(h)[-1]["release"]) == ("staging", rid)
        assert state_files(h) == {"lock": False, "intents": []}
    assert sorted(per.values()) == [8, 8], per


def test_a_one_host_reload_rides_with_the_intent_and_the_rename(world, tmp_path):
    """A stage of one host with a reload_command: the intent, the rename and the reload (each only once the
    one before it succeeded) go as one exchange; the reload ran in the new release, with the stage's env."""
    p, repo, (web1, web2) = world["project"], world["repo"], world["hosts"]
    repo.commit("a change to reload", {"round_trips.txt": "5\n"})
    p.ok("deploy:test")
    rid = p.link(web1).rsplit("/", 1)[1]
    before = p.link(web2, "sites/staging")
    reloads = web1.path("/srv/blog/reloads")
    p.write(hosts=web1.url, prod_stage_extra="reload_command = sh -c 'echo \"$STAGE ${PWD##*/}\" >> ../../reloads'")
    try:
        per = exchanges(p, tmp_path, "promote:staging")
    finally:
        p.write(hosts=", ".join(h.url for h in world["hosts"]), prod_stage_extra="")
    assert p.link(web1, "sites/staging") == f"../releases/{rid}" and p.link(web2, "sites/staging") == before
    assert reloads.read_text().splitlines() == [f"staging {rid}"]
    last = log_of(web1)[-1]
    assert (last["stage"], last["release"], last["result"]) == ("staging", rid, "ok")
    assert state_files(web1) == {"lock": False, "intents": []}
    # web1: the take (+ every read); the stage's files; intent + rename + reload; the record, the intent's
    # removal and the scan (+ facts); verify's record with the lock's release (6 with the reload apart).
    # web2, test's host but not staging's: test's link and verify record, in one exchange (2 apart)
    assert sorted(per.values()) == [1, 5], per
