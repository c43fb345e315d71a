"""The S3 artifact store, on the deploying machine only: put an artifact once, hand hosts a presigned URL.

boto3 finds credentials by its standard chain (AWS_* variables, AWS_PROFILE, ~/.aws, an instance or task
role); hosts never get any, only a presigned GET URL per artifact and host, valid URL_SECONDS. An object
whose metadata `sha256` (and size) matches the local file is not uploaded again. boto3 is imported only
here, and only when a run uses an S3 store (it is the optional extra `doit-stages[s3]`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ..config import S3Store
from ..errors import StepError
from ..runtime.common import sha256_file
from .archive import wheelhouse_path
from .download import StoreDownload

URL_SECONDS = 900        # a presigned URL is a bearer credential: short-lived, made right before its use
MAX_URL_SECONDS = 3600   # never longer than this (SigV4 itself would allow 7 days)
MULTIPART_BYTES = 64 * 1024 * 1024   # one PUT up to this size; a multipart upload above it


def url_seconds(seconds: int) -> int:
    """The expiry a presigned URL gets: refused when it is not within (0, MAX_URL_SECONDS]."""
    if not 0 < seconds <= MAX_URL_SECONDS:
        raise ValueError(f"a presigned URL may live 1..{MAX_URL_SECONDS} s, not {seconds}")
    return seconds


def address_of(url: str) -> str:
    """scheme://host[:port] of a URL: what may be said about a presigned URL (never its query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def make_client(store: S3Store):
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",  # presigned URLs with X-Amz-Expires (SigV2 ones are refused by most stores)
        # a custom endpoint (MinIO, Ceph RGW, an IP address) is addressed by path, AWS by virtual host
        s3={"addressing_style": "path" if store.endpoint else "auto"},
        # boto3 >= 1.36 adds CRC checksums that some S3-compatible stores reject; hosts check sha256 anyway
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("s3", endpoint_url=store.endpoint or None,
                                          region_name=store.region or None, config=config)


class ArtifactStore:
    def __init__(self, store: S3Store, what: str, client=None):
        self.store, self.what = store, what
        self.client = client if client is not None else self._call(lambda: make_client(store))

    def _call(self, fn: Callable):
        """Run one boto3 call; its errors become one line naming the store and what to do."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return fn()
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            # upload_file wraps the ClientError of its PUT in an S3UploadFailedError
            cause = exc.__context__ if isinstance(exc, Boto3Error) and exc.__context__ else exc
            raise StepError(f"{self.what}: artifact store {self.store}: {self._why(cause)}") from None

    def _why(self, exc: Exception) -> str:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ("no AWS credentials on this machine; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                    "or ~/.aws/credentials (hosts need none)")
        if isinstance(exc, EndpointConnectionError):
            return f"cannot reach it from this machine ({exc}); check s3_endpoint and the network"
        if not isinstance(exc, ClientError):
            return " ".join(str(exc).split())
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        why = f"{code}: {err.get('Message') or 'refused'}"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            why += "; the credentials need s3:GetObject and s3:PutObject on the prefix"
        elif code in ("NoSuchBucket", "404"):
            why += f"; create the bucket {self.store.bucket} or fix artifact_store"
        return why

    def holds(self, key: str, sha256: str, size: int) -> bool:
        from botocore.exceptions import ClientError

        def head():
            try:
                return self.client.head_object(Bucket=self.store.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise
        meta = self._call(head)
        return bool(meta) and meta.get("Metadata", {}).get("sha256") == sha256 and meta.get("ContentLength") == size

    def put(self, path: Path, sha256: str, on_bytes: Callable[[int], None] | None = None) -> bool:
        """The file in the store under prefix/<its name>, unless an object with its sha256 is there.
        True when it was uploaded now."""
        key, size = self.store.key(path.name), path.stat().st_size
        if self.holds(key, sha256, size):
            return False
        from boto3.s3.transfer import TransferConfig
        transfer = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
        self._call(lambda: self.client.upload_file(
            str(path), self.store.bucket, key, Config=transfer, Callback=on_bytes,
            ExtraArgs={"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"}))
        return True

    def presign(self, name: str, seconds: int = URL_SECONDS) -> str:
        """A GET URL for prefix/<name>, signed here (no request), valid `seconds` (at most an hour)."""
        params = {"Bucket": self.store.bucket, "Key": self.store.key(name)}
        return self._call(lambda: self.client.generate_presigned_url("get_object", Params=params,
                                                                     ExpiresIn=url_seconds(seconds)))


def store_source(config, release, what: str, progress=None):
    """Put the release's archive (and wheelhouse) in the store once, for run_upload: returns the
    StoreDownload that each host then uses to pull them (a fresh presigned URL per host and file)."""
    store = ArtifactStore(config.project.store, what)
    files = {f"{release.id}.tar.gz": release.sha256}
    if release.wheels:
        wheels = wheelhouse_path(config.build_dir, release.wheels)
        files[wheels.name] = sha256_file(wheels)
    for name, sha256 in files.items():
        path = config.build_dir / name
        if progress is not None:
            progress.set_phase(f"to {config.project.store.url}", path.stat().st_size)
        store.put(path, sha256, progress.sent if progress is not None else None)
    if progress is not None:
        progress.set_phase("")
    # the exact scheme://host:port the hosts will reach (virtual-host style on AWS, path style elsewhere)
    address = address_of(store.presign(f"{release.id}.tar.gz", 1))
    return StoreDownload(config.project.store.url, address, store.presign, files)
