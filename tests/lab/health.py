"""A health URL for the stages (health_url = http://{host}:<port>/...): an HTTP server in a thread of this
process that answers 200 and remembers when it was asked."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HealthServer:
    """The stages' health_url: answers 200 and remembers when it was asked."""

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(time.time())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def since(self, t0: float) -> int:
        return sum(1 for t in self.hits if t >= t0)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
