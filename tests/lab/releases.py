"""Releases as the tests make them: an id (a larger n, a later commit), a release-log record, and a release's
archive on a temp 'host' (deploy_root) for the build tests on the local transport."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from doit_stages.layout import Layout, release_id


def archived_release(layout: Layout, n: int) -> str:
    """Release n of 'blog' (revision n as 40 hex digits): its archive, one app.py, at layout.artifact(id)."""
    rid = release_id("blog", 1_700_000_000 + 3600 * n, f"{n:040x}")
    art = Path(layout.artifact(rid))
    art.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(art, "w:gz") as tar:
        data = f"print({n})\n".encode()
        info = tarfile.TarInfo("app.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return rid


def rid(n: int, name: str = "blog") -> str:
    """A release id; a larger n is a later commit."""
    return release_id(name, 1_700_000_000 + 3600 * n, f"{n:012x}" + "0" * 28)


def rec(stage: str, release: str, result: str, **kw) -> dict:
    """A release-log record (.deploy/releases.jsonl)."""
    return {"stage": stage, "release": release, "result": result, "revision": "r-" + release, **kw}
