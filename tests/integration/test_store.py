"""tasks/steps/store.py and tasks/steps/download.py against moto's real S3 HTTP API on 127.0.0.1, with real curl
on the local transport. moto checks neither signatures nor expiry, so the rules about the presigned URL
(that it never reaches a command line or a message) are checked here, on our code (how long it lives and
the quoting, on plain inputs: tests/unit/test_store.py)."""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from doit_stages.config import Host, S3Store
from doit_stages.errors import StepError
from doit_stages.steps.download import FETCH, StoreDownload
from doit_stages.steps.store import MAX_URL_SECONDS, URL_SECONDS, ArtifactStore, address_of
from doit_stages.transport import LocalTransport

SECRET = "test-secret-" + secrets.token_hex(8)


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Credentials for the deployer only, and no way for boto3 to look anywhere else (no IMDS traffic)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTSTORE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def bucket(s3_server):
    name = f"dst-{secrets.token_hex(4)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def store_of(s3_server, bucket, prefix="rel/blog"):
    return S3Store(bucket, prefix, s3_server.endpoint, "us-east-1")


class Recording(LocalTransport):
    """The local transport, keeping every argv it ran (to prove what reached a command line)."""

    def __init__(self):
        super().__init__(Host("local"))
        self.argvs: list[list[str]] = []

    def call(self, argv, input=None):
        self.argvs.append(list(argv))
        return super().call(argv, input)


def test_presigned_url_is_sigv4_and_lives_at_most_an_hour(s3_server, bucket, aws_env):
    store = ArtifactStore(store_of(s3_server, bucket), "upload:test")
    url = store.presign("blog-x.tar.gz")
    q = parse_qs(urlsplit(url).query)
    assert q["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and "X-Amz-Signature" in q
    assert int(q["X-Amz-Expires"][0]) == URL_SECONDS <= MAX_URL_SECONDS
    assert urlsplit(url).path == f"/{bucket}/rel/blog/blog-x.tar.gz"
    assert SECRET not in url
    assert int(parse_qs(urlsplit(store.presign("a", MAX_URL_SECONDS)).query)["X-Amz-Expires"][0]) == 3600
    with pytest.raises(ValueError):
        store.presign("a", MAX_URL_SECONDS + 1)
    assert address_of(url) == s3_server.endpoint


# -- putting an artifact once -----------------------------------------------------------------------
def test_an_object_with_the_same_sha256_is_not_uploaded_again(s3_server, bucket, aws_env, tmp_path):
    art = tmp_path / "blog-1.tar.gz"
    art.write_bytes(b"release one" * 1000)
    sha = hashlib.sha256(art.read_bytes()).hexdigest()
    store = ArtifactStore(store_of(s3_server, bucket), "upload:test")
    seen = []
    assert store.put(art, sha, seen.append) is True
    assert sum(seen) == art.stat().st_size
    first = s3_server.objects(bucket)
    assert list(first) == ["rel/blog/blog-1.tar.gz"] and first["rel/blog/blog-1.tar.gz"]["sha256"] == sha
    puts = s3_server.count("PUT", f"/{bucket}/rel/blog/blog-1.tar.gz")
    assert store.put(art, sha) is False
    assert s3_server.objects(bucket) == first
    assert s3_server.count("PUT", f"/{bucket}/rel/blog/blog-1.tar.gz") == puts == 1
    # other bytes under the same name (another digest): uploaded again
    art.write_bytes(b"release one, rebuilt")
    assert store.put(art, hashlib.sha256(art.read_bytes()).hexdigest()) is True
    assert s3_server.count("PUT", f"/{bucket}/rel/blog/blog-1.tar.gz") == 2


def test_store_errors_are_one_line_naming_the_store(s3_server, aws_env, monkeypatch, tmp_path):
    art = tmp_path / "a.tar.gz"
    art.write_bytes(b"x")
    missing = S3Store("no-such-bucket-here", "p", s3_server.endpoint, "us-east-1")
    with pytest.raises(StepError) as info:
        ArtifactStore(missing, "upload:test").put(art, "0" * 64)
    msg = str(info.value)
    assert msg.startswith("upload:test: artifact store s3://no-such-bucket-here/p at http://127.0.0.1:")
    assert "\n" not in msg and "create the bucket no-such-bucket-here" in msg
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StepError) as info:
        ArtifactStore(missing, "upload:test").put(art, "0" * 64)
    assert "no AWS credentials on this machine" in str(info.value) and "\n" not in str(info.value)


def put_artifact(s3_server, bucket, tmp_path):
    art = tmp_path / "blog-2.tar.gz"
    art.write_bytes(secrets.token_bytes(50_000))
    sha = hashlib.sha256(art.read_bytes()).hexdigest()
    store = ArtifactStore(store_of(s3_server, bucket), "upload:test")
    store.put(art, sha)
    return art, sha, store


def test_a_host_downloads_with_curl_and_the_url_never_reaches_argv(s3_server, bucket, aws_env, tmp_path):
    art, sha, store = put_artifact(s3_server, bucket, tmp_path)
    urls = []

    def presign(name):
        urls.append(store.presign(name))
        return urls[-1]
    t = Recording()
    dest = tmp_path / "host" / "blog-2.tar.gz.partial"
    dest.parent.mkdir()
    StoreDownload(store.store.url, s3_server.endpoint, presign, {art.name: sha}).fetch(t, art.name, str(dest))
    assert dest.read_bytes() == art.read_bytes()
    assert len(urls) == 1 and t.argvs == [["sh", "-c", FETCH, "sh", str(dest)]]
    signature = parse_qs(urlsplit(urls[0]).query)["X-Amz-Signature"][0]
    assert not any(signature in a or "X-Amz" in a for argv in t.argvs for a in argv)
    assert s3_server.count("GET", f"/{bucket}/rel/blog/blog-2.tar.gz") >= 1


def test_a_wrong_digest_is_refused_and_the_file_removed(s3_server, bucket, aws_env, tmp_path):
    art, sha, store = put_artifact(s3_server, bucket, tmp_path)
    dest = tmp_path / "got"
    with pytest.raises(StepError) as info:
        StoreDownload(store.store.url, s3_server.endpoint, store.presign, {art.name: "f" * 64}).fetch(
            Recording(), art.name, str(dest))
    assert "local: upload: blog-2.tar.gz from the artifact store" in str(info.value) and "expected ffffffffffff" \
        in str(info.value)
    assert not dest.exists()


def test_an_unreachable_store_is_one_line_with_its_address_not_the_url(aws_env, tmp_path):
    from tests.lab.common import free_port
    closed = f"http://127.0.0.1:{free_port()}"       # nothing listens there
    store = ArtifactStore(S3Store("bkt", "p", closed, "us-east-1"), "upload:test")
    dest = tmp_path / "got"
    with pytest.raises(StepError) as info:
        StoreDownload("s3://bkt/p", closed, store.presign, {"a.tar.gz": "0" * 64}).fetch(
            Recording(), "a.tar.gz", str(dest))
    msg = str(info.value)
    assert msg.startswith(f"local: upload: cannot download a.tar.gz from the artifact store s3://bkt/p ({closed}): ")
    assert "curl: (7)" in msg and "make sure this host reaches the store" in msg
    assert "X-Amz" not in msg and "\n" not in msg and not dest.exists()


def test_a_host_without_curl_is_told_to_install_it(aws_env, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "sha256sum", "rm"):
        (bindir / tool).symlink_to(Path("/bin") / tool if Path("/bin", tool).exists() else Path("/usr/bin", tool))
    monkeypatch.setenv("PATH", str(bindir))
    store = ArtifactStore(S3Store("bkt", "p", "http://127.0.0.1:9", "us-east-1"), "upload:test")
    with pytest.raises(StepError) as info:
        StoreDownload("s3://bkt/p", "http://127.0.0.1:9", store.presign, {"a": "0" * 64}).fetch(
            Recording(), "a", str(tmp_path / "got"))
    assert str(info.value) == ("local: upload: curl is not installed on the host; install it "
                               "(artifact_store = s3 downloads with curl)")
