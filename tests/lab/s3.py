"""S3: `S3Server()` is moto's real S3 HTTP API on 127.0.0.1 (path-style), with a log of the requests it got."""
from __future__ import annotations


class S3Server:
    """moto's S3 server in a thread of this process: a real HTTP S3 API at 127.0.0.1:<free port>. It does
    not check signatures or expiry (so the tests check those rules on the tool's own code). `requests`
    holds (method, path, query) of every request it answered."""

    def __init__(self):
        import threading

        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server
        self.requests: list[tuple[str, str, str]] = []
        app = DomainDispatcherApplication(create_backend_app)

        def recording(environ, start_response):
            # counted at the WSGI door, not from werkzeug's request log: a logging.config.dictConfig run
            # anywhere in this process (a library's set-up, in another test on the same worker) disables that
            # logger, and then no request was counted
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                  environ.get("QUERY_STRING", "")))
            return app(environ, start_response)
        self._server = make_server("127.0.0.1", 0, recording, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
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
        self._server.shutdown()
        self._thread.join()

