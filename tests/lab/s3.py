"""S3: `S3Server()` is moto's real S3 HTTP API on 127.0.0.1 (path-style), with a log of the requests it got."""
from __future__ import annotations

import re


class S3Server:
    """moto's S3 server in a thread of this process: a real HTTP S3 API at 127.0.0.1:<free port>. It does
    not check signatures or expiry (so the tests check those rules on the tool's own code). `requests`
    holds (method, path, query) of every request it answered, from its werkzeug request log."""

    REQUEST_RE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/[\d.]+')

    def __init__(self):
        import logging

        from moto.server import ThreadedMotoServer
        self.requests: list[tuple[str, str, str]] = []
        server = self

        class Log(logging.Handler):
            def emit(self, record):
                m = S3Server.REQUEST_RE.search(record.getMessage())
                if m:
                    path, _, query = m.group(2).partition("?")
                    server.requests.append((m.group(1), path, query))
        self._handler = Log()
        self._logger = logging.getLogger("werkzeug")
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.INFO)
        # a logging.config.dictConfig run earlier in this process (a library's set-up, in another test file on
        # the same worker) disables every logger that existed then: this one too, and no request was counted
        self._logger.disabled = False
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=True)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="harness", aws_secret_access_key="harness",
                            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))

    def objects(self, bucket: str) -> dict[str, dict]:
        """key -> {size, etag, modified, sha256 (its metadata)} of every object in the bucket."""
        c, out = self.client(), {}
        for o in c.list_objects_v2(Bucket=bucket).get("Contents", []):
            head = c.head_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"]] = {"size": o["Size"], "etag": o["ETag"], "modified": o["LastModified"],
                             "sha256": head["Metadata"].get("sha256")}
        return out

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def stop(self) -> None:
        self._server.stop()
        self._logger.removeHandler(self._handler)

