"""steps/health.py: the health URL of each host, and the check against a real HTTP server on 127.0.0.1 (the
standard library's, in a thread of this process): what is sent, what passes, and that a redirect is
reported at once, not followed."""
from __future__ import annotations

import http.server
import socket
import threading

import pytest

from doit_stages.config import parse_host
from doit_stages.steps.health import check_health, health_url, unresolved


class App(http.server.BaseHTTPRequestHandler):
    """/ok: 200; /moved: 301 to https (as an app behind a TLS proxy answers plain http), 200 when the
    proxy's header says https; /down: 503; every request's headers are kept in `seen`."""
    seen: list[dict] = []

    def do_GET(self):
        App.seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
        if self.path == "/moved" and self.headers.get("X-Forwarded-Proto") != "https":
            self.send_response(301)
            self.send_header("Location", "https://127.0.0.1:1/moved")
        else:
            self.send_response(503 if self.path == "/down" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def test_2xx_passes(server):
    assert check_health(server + "/ok", 5) is None


def test_a_redirect_is_reported_at_once_with_its_location(server):
    App.seen.clear()
    problem = check_health(server + "/moved", 20)
    assert problem.startswith(f"{server}/moved: HTTP 301 redirect to https://127.0.0.1:1/moved, not followed "
                              "(accepted: 2xx)") and "health_headers" in problem
    assert [r["path"] for r in App.seen] == ["/moved"]     # asked once: no retry, nothing followed


def test_the_headers_are_sent(server):
    App.seen.clear()
    headers = (("X-Forwarded-Proto", "https"), ("Host", "blog.example.com"))
    assert check_health(server + "/moved", 5, headers) is None
    assert App.seen[-1]["host"] == "blog.example.com" and App.seen[-1]["x-forwarded-proto"] == "https"


def test_another_status_is_asked_again_until_the_timeout_and_says_what_is_accepted(server):
    App.seen.clear()
    assert check_health(server + "/down", 1) == f"{server}/down: HTTP 503 after 1s (accepted: 2xx)"
    assert len(App.seen) >= 2


# -- health ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, url", [
    ("local", "http://127.0.0.1:8000/health/"),
    ("ssh://10.1.2.3", "http://10.1.2.3:8000/health/"),
])
def test_health_url(spec, url):
    assert health_url("http://{host}:8000/health/", parse_host(spec).address) == url


def test_health_url_without_placeholder_or_twice_or_ipv6():
    assert health_url("https://blog.example/health", "web1.example") == "https://blog.example/health"
    assert health_url("http://{host}/?h={host}", "web1.example") == "http://web1.example/?h=web1.example"
    assert health_url("http://{host}:8000/", "fd00::7") == "http://[fd00::7]:8000/"


def test_a_name_that_does_not_resolve_is_told_at_once():
    assert unresolved(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert not unresolved(ConnectionRefusedError(111, "Connection refused"))
    assert not unresolved(TimeoutError("timed out"))
