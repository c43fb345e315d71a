"""health: after a switch (and reload), the stage's health_url must answer 2xx within health_timeout.

A GET with the stage's health_headers (e.g. `X-Forwarded-Proto: https`, `Host: blog.example.com`: what the
app's proxy would send). A redirect is not followed: it is reported at once with its Location (a 301 to
https followed blindly would be a TLS handshake against the app's plain-HTTP port, and a timeout). Any
other answer, or none, is asked again every half second until health_timeout; a name that does not
resolve is reported at once (no retry makes it resolve).

{host} is the host's real name: the HostName ssh connects to for the host's alias (`ssh -G`, asked once
per run: Transport.address), not the alias itself, which only ssh's config knows.
"""
from __future__ import annotations

import socket
import time

ACCEPTED = "2xx"


def health_url(template: str, address: str) -> str:
    """The template with {host} replaced by the host's address (an IPv6 one in brackets, as a URL needs)."""
    return template.replace("{host}", f"[{address}]" if ":" in address else address)


def unresolved(reason: object) -> bool:
    """The reason urllib gives is a failed name lookup (getaddrinfo): asking again would not help."""
    return isinstance(reason, socket.gaierror)


def check_health(url: str, timeout: int, headers: tuple[tuple[str, str], ...] = ()) -> str | None:
    """None when url answered 2xx within timeout seconds, else the problem: a redirect at once, any other
    answer (or none) when the time is up."""
    import urllib.error  # with ssl, ~10 ms of start-up that a stage without health_url never needs
    import urllib.parse
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
            reason = getattr(exc, "reason", exc)
            if unresolved(reason):
                host = urllib.parse.urlsplit(url).hostname
                return (f"{url}: the name {host} does not resolve on this machine ({reason.strerror}); give "
                        "health_url a name or address this machine can look up")
            problem = str(reason)
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
