"""switch: a stage's live link moved to a release by rename (temp link + mv -T), never by rm + ln.

rename(2) replaces the link in one step, so a reader sees the old target or the new one, never nothing.
"""
from __future__ import annotations

import posixpath

from ..layout import READY, Layout
from ..transport import Transport

# $1 deploy_root, $2 link (relative to root), $3 new target (relative to the link's dir)
SWITCH = 'set -e; cd "$1"; mkdir -p "$(dirname "$2")"; tmp="$2.tmp.$$"; ln -s "$3" "$tmp"; mv -T "$tmp" "$2"'


def read_link(t: Transport, layout: Layout, link: str) -> str | None:
    code, out, _ = t.call(["readlink", "--", layout.link(link)])
    return out.strip() if code == 0 else None


def release_of(target: str | None) -> str | None:
    """The release id a link target names (../releases/<id>), else None."""
    if not target:
        return None
    parts = posixpath.normpath(target).split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "releases" else None


def set_link(t: Transport, layout: Layout, link: str, target: str | None) -> None:
    """Point link at target (a relative path), or remove it when target is None (undo of a first switch)."""
    if target is None:
        t.run(["rm", "-f", "--", layout.link(link)])
    else:
        t.run(["sh", "-c", SWITCH, "sh", layout.root, link, target])


def switch_link(t: Transport, layout: Layout, link: str, rid: str) -> None:
    set_link(t, layout, link, layout.link_target(link, rid))


def is_ready(t: Transport, layout: Layout, rid: str) -> bool:
    return t.exists(posixpath.join(layout.release(rid), READY))
