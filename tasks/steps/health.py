"""health: after a switch (and reload), the stage's health_url must answer 2xx within health_timeout.

A GET with the stage's health_headers (e.g. `X-Forwarded-Proto: https`, `Host: blog.example.com`: what the
app's proxy would send). A redirect is not followed: it is reported at once with its Location (a 301 to
https followed blindly would be a TLS handshake against the app's plain-HTTP port, and a timeout). Any
other answer, or none, is asked again every half second until health_timeout.
"""
from __future__ import annotations

import time

from ..config import Host

ACCEPTED = "2xx"


def health_url(template: str, host: Host) -> str:
    return template.replace("{host}", host.address)


def check_health(url: str, timeout: int, headers: tuple[tuple[str, str], ...] = ()) -> str | None:
    """None when url answered 2xx within timeout seconds, else the problem: a redirect at once, any other
    answer (or none) when the time is up."""
    import urllib.error  # with ssl, ~10 ms of start-up that a stage without health_url never needs
    import urllib.request
    opener = _opener()
    request = urllib.request.Request(url, headers=dict(headers))
    deadline, problem = time.monotonic() + timeout, "no answer"
    while True:
        try:
            with opener.open(request, timeout=min(5.0, max(timeout, 1))) as resp:
                if 200 <= resp.status < 300:
                    return None
                problem = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            exc.close()
            if 300 <= exc.code < 400:
                return redirected(url, exc.code, exc.headers.get("Location"))
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            return f"{url}: {problem} after {timeout}s (accepted: {ACCEPTED})"
        time.sleep(0.5)


def redirected(url: str, code: int, location: str | None) -> str:
    where = _printable(location)[:300] if location else "nowhere (no Location header)"
    return (f"{url}: HTTP {code} redirect to {where}, not followed (accepted: {ACCEPTED}); point health_url "
            "at an address that answers itself, or send what the app expects with health_headers "
            "(e.g. X-Forwarded-Proto: https, Host: <the site's name>)")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _opener():
    """urllib's opener, except that a redirect is returned as the HTTPError of its status, not followed."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None
    return urllib.request.build_opener(NoRedirect)
