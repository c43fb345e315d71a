"""health: after a switch (and reload), the stage's health_url must answer 2xx within health_timeout."""
from __future__ import annotations

import time

from ..config import Host


def health_url(template: str, host: Host) -> str:
    return template.replace("{host}", host.address)


def check_health(url: str, timeout: int) -> str | None:
    """None when url answered 2xx within timeout seconds, else the last problem seen."""
    import urllib.error  # with ssl, ~10 ms of start-up that a stage without health_url never needs
    import urllib.request
    deadline, problem = time.monotonic() + timeout, "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, max(timeout, 1))) as resp:
                if 200 <= resp.status < 300:
                    return None
                problem = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            return f"{url}: {problem} after {timeout}s"
        time.sleep(0.5)
