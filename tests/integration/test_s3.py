"""artifact_store = s3://...: 16 real sshd hosts pull one upload from moto's real S3 HTTP API on 127.0.0.1.

A code-only stage (build = none), as bench/bench_deploy.py deploys. The deployer alone holds AWS
credentials; each host gets a presigned URL on curl's stdin. moto checks no signature or expiry (those
rules are unit-tested in test_store.py); what is checked here is what really happens on the hosts, in the
store (its objects and the requests it answered), on every command line and in the output."""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import threading

import pytest

from tests.lab.apprepo import AppRepo
from tests.lab.common import CmdlineScan, free_port
from tests.lab.project import DOIT, Project
from tests.lab.sshd import SshHosts
from tests.lab.stages_ini import CODE_ONLY, stages_ini

HOSTS = [f"h{i:02d}" for i in range(1, 17)]
SECRET = "sEcReT-" + secrets.token_hex(12)
ACCESS_KEY = "AKIADST" + secrets.token_hex(6).upper()
AWS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_EC2_METADATA_DISABLED": "true",
       "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
# never on a command line, in the output or in a host's files: the secret, the key id, any signed URL
NEEDLES = [SECRET.encode(), ACCESS_KEY.encode(), b"X-Amz-Signature", b"X-Amz-Credential"]

# a code-only stage, as bench/bench_deploy.py deploys
INI = stages_ini(CODE_ONLY, {"project": {"build": "none", "keep_releases": "3", "parallel": "16"}})


@pytest.fixture(scope="module")
def world(s3_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("s3world")
    hosts = SshHosts(base / "fleet", names=HOSTS)
    bucket = f"dst-{secrets.token_hex(4)}"
    s3_server.client().create_bucket(Bucket=bucket)
    repo = AppRepo(base / "blog")
    (base / "work").mkdir()
    p = Project(base / "work", repo.path, list(hosts), hosts.ssh_config, template=INI)
    p.write(project_extra=f"artifact_store = s3://{bucket}/blog/releases\ns3_endpoint = {s3_server.endpoint}\n"
                          "s3_region = us-east-1\n")
    yield {"project": p, "hosts": list(hosts), "s3": s3_server, "bucket": bucket, "repo": repo}
    hosts.stop()


def release_tree(host, rid: str) -> str:
    """One digest of a release directory: every path, its type, mode, bytes and link target (of the env dir,
    the env file each stage runs with: its versions are named at random by each build)."""
    root = host.path(f"/srv/blog/releases/{rid}")
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            if os.path.basename(dirpath) == ".deploy-env" and (name.count(".") != 1 or name.endswith(".built")):
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, root)}\0{st.st_mode:o}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def run_scanning(p: Project, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """doit, while every process's command line is read over and over for a credential or signed URL."""
    with CmdlineScan(NEEDLES) as scan:
        res = p.doit(*args, env=AWS)
    return res, scan.seen


def signatures(s3) -> set[bytes]:
    """The signatures of every presigned URL the store was asked for (from its request log)."""
    return {m.encode() for _, _, q in s3.requests for m in re.findall(r"X-Amz-Signature=([0-9a-f]+)", q)}


def assert_no_secret_on_hosts(world):
    needles = NEEDLES + list(signatures(world["s3"]))
    assert len(needles) > len(NEEDLES)
    for host in world["hosts"]:
        for dirpath, _, files in os.walk(host.root):
            for name in files:
                path = os.path.join(dirpath, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as fh:
                        data = fh.read()
                    assert not any(n in data for n in needles), f"{path} holds a credential or signed URL"


def rid_of(link: str) -> str:
    return link.rsplit("/", 1)[-1]


def test_sixteen_hosts_pull_one_upload_from_the_store(world):
    p, s3, bucket = world["project"], world["s3"], world["bucket"]
    res, seen = run_scanning(p, "deploy:test")
    assert res.returncode == 0, res.stdout + res.stderr
    links = p.links("sites/test")
    assert len(set(links)) == 1 and links[0].startswith("../releases/blog-"), links
    rid = rid_of(links[0])
    key, sha = f"blog/releases/{rid}.tar.gz", p.archive_sha(rid)
    objects = s3.objects(bucket)
    assert list(objects) == [key] and objects[key]["sha256"] == sha
    assert s3.count("PUT", f"/{bucket}/{key}") == 1          # one upload from the deployer
    assert s3.count("GET", f"/{bucket}/{key}") == 16         # each host pulled it itself
    trees = {h.name: release_tree(h, rid) for h in world["hosts"]}
    assert len(set(trees.values())) == 1, trees
    for h in world["hosts"]:
        art = h.path(f"/srv/blog/.deploy/artifacts/{rid}.tar.gz").read_bytes()
        assert hashlib.sha256(art).hexdigest() == sha
    assert seen == []
    out = (res.stdout + res.stderr).encode()
    assert not any(n in out for n in NEEDLES + list(signatures(s3)))
    assert not any(n in (p.workdir / ".doit-stages.sqlite3").read_bytes() for n in NEEDLES)
    assert_no_secret_on_hosts(world)

    # another deployer (no build/, no dep file) and two new, empty hosts: the same bytes are not put again
    h03, h09 = world["hosts"][2], world["hosts"][8]
    h03.wipe()
    h09.wipe()
    shutil.rmtree(p.workdir / "build")
    (p.workdir / ".doit-stages.sqlite3").unlink()
    res, seen = run_scanning(p, "deploy:test")
    assert res.returncode == 0, res.stdout + res.stderr
    assert s3.objects(bucket) == objects                     # same ETag, same LastModified
    assert s3.count("PUT", f"/{bucket}/{key}") == 1 and s3.count("GET", f"/{bucket}/{key}") == 18
    assert p.link(h03) == p.link(h09) == links[0]
    assert release_tree(h03, rid) == release_tree(h09, rid) == trees["h01"]
    assert seen == []


def test_on_a_terminal_each_node_shows_its_hosts(world):
    p, repo = world["project"], world["repo"]
    repo.commit("r2", {"static/version.txt": "r2\n"})
    master, slave = os.openpty()
    proc = subprocess.Popen([*DOIT, "deploy:test"], cwd=p.workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ, STAGES_INI=str(p.ini), **AWS))
    os.close(slave)
    chunks = []

    def read():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:                                   # EIO: the other side is closed
                return
            if not data:
                return
            chunks.append(data)
    t = threading.Thread(target=read)
    t.start()
    stdout = proc.communicate(timeout=300)[0].decode()
    t.join()
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, stdout + shown
    assert f"\rupload:test  to s3://{world['bucket']}/blog/releases " in shown
    for node in ("upload:test", "build:test", "switch:test"):
        assert f"\r{node}  16/16 hosts" in shown, shown
    assert "\x1b[K" in shown and "X-Amz" not in shown
    assert stdout.count("upload:test") >= 1 and "\r" not in stdout     # progress goes to the terminal only


def test_a_host_that_cannot_reach_the_store_stops_every_switch(world):
    p, repo, s3, bucket = world["project"], world["repo"], world["s3"], world["bucket"]
    before = p.links("sites/test")
    assert len(set(before)) == 1
    repo.commit("r3", {"static/version.txt": "r3\n"})
    cut = world["hosts"][6]
    proxy = f"http://127.0.0.1:{free_port()}"                 # a proxy that is not there: no way out
    cut.restart(session_env={"http_proxy": proxy, "https_proxy": proxy, "ALL_PROXY": proxy})
    try:
        res, seen = run_scanning(p, "deploy:test")
        assert res.returncode != 0
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
        assert len(errors) == 1, res.stderr
        err = errors[0]
        assert err.startswith(f"ERROR: upload:test: failed on 1 of 16 host(s): {cut.url}: upload: cannot download "
                              f"blog-"), err
        assert err.count(cut.url) == 1
        assert f"from the artifact store s3://{bucket}/blog/releases ({s3.endpoint})" in err
        assert "make sure this host reaches the store" in err
        assert not any(h.url in err for h in world["hosts"] if h is not cut)
        assert "X-Amz" not in res.stdout + res.stderr and seen == []
        assert p.links("sites/test") == before                # no host switched
        new_keys = [k for k in s3.objects(bucket) if k.endswith(".tar.gz")]
        assert len(new_keys) == 3                              # r1, r2 and r3 in the store, each put once
    finally:
        cut.restart(session_env={})
    res = p.ok("deploy:test", env=AWS)
    after = p.links("sites/test")
    assert len(set(after)) == 1 and after != before
    rid = rid_of(after[0])
    assert s3.count("PUT", f"/{bucket}/blog/releases/{rid}.tar.gz") == 1
    assert_no_secret_on_hosts(world)


PIP_INI = stages_ini(CODE_ONLY)


def test_the_wheelhouse_goes_through_the_store_too(clean_ssh_hosts, s3_server, tmp_path):
    import tarfile
    hosts = [clean_ssh_hosts["web1"], clean_ssh_hosts["web2"]]
    bucket = f"dst-{secrets.token_hex(4)}"
    s3_server.client().create_bucket(Bucket=bucket)
    (tmp_path / "work").mkdir()
    repo = AppRepo(tmp_path / "blog")
    p = Project(tmp_path / "work", repo.path, hosts, clean_ssh_hosts.ssh_config, template=PIP_INI)
    p.write(project_extra=f"artifact_store = s3://{bucket}\ns3_endpoint = {s3_server.endpoint}\n")
    res, seen = run_scanning(p, "deploy:test")
    assert res.returncode == 0, res.stdout + res.stderr
    rid = rid_of(p.links("sites/test")[0])
    wheels = next((p.workdir / "build").glob("wheels-*.tar"))
    digest = wheels.name[len("wheels-"):-len(".tar")]
    objects = s3_server.objects(bucket)
    assert sorted(objects) == [f"{rid}.tar.gz", wheels.name]
    assert objects[wheels.name]["sha256"] == hashlib.sha256(wheels.read_bytes()).hexdigest()
    for key in objects:
        assert s3_server.count("PUT", f"/{bucket}/{key}") == 1 and s3_server.count("GET", f"/{bucket}/{key}") == 2
    with tarfile.open(wheels) as tar:
        local = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    for h in hosts:
        there = h.path(f"/srv/blog/.deploy/wheels/{digest}")
        assert {n: (there / n).read_bytes() for n in local} == local
        run = h.run([f"/srv/blog/releases/{rid}/.venv/bin/python", "-c", "import django; print(django.VERSION[0])"])
        assert run.returncode == 0 and run.stdout.strip().isdigit(), run.stderr
    assert seen == [] and "X-Amz" not in res.stdout + res.stderr
