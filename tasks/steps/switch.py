"""switch: a stage's live link moved to a release by rename (temp link + mv -T), never by rm + ln.

rename(2) replaces the link in one step, so a reader sees the old target or the new one, never nothing.
"""
from __future__ import annotations

import posixpath

from ..layout import READY, Layout
from ..transport import Transport

# $1 deploy_root, $2 link (relative to root), $3 new target (relative to the link's dir)
SWITCH = 'set -e; cd "$1"; mkdir -p "$(dirname "$2")"; tmp="$2.tmp.$$"; ln -s "$3" "$tmp"; mv -T "$tmp" "$2"'


# $1 release dir, $2 READY marker name, $3 the stage's built marker, $4 link; then the shared paths that
# must be linked into the release. One line each: ready 0|1, built <id>, missing <path>..., link <target>
READINESS = r'''rel=$1; ready=$2; marker=$3; link=$4; shift 4
[ -f "$rel/$ready" ] && echo "ready 1" || echo "ready 0"
built=; { IFS= read -r built < "$marker"; } 2>/dev/null; echo "built $built"
for p in "$@"; do [ -L "$rel/$p" ] && [ -e "$rel/$p" ] || echo "missing $p"; done
echo "link $(readlink -- "$link")"
'''


def read_readiness(t: Transport, layout: Layout, rid: str, built_marker: str, link: str,
                   shared: list[str]) -> dict:
    """Everything a switch checks on a host first, read by one command: {"ready": bool, "built": id,
    "missing": [paths], "link": target or None}."""
    out = t.run(["sh", "-c", READINESS, "sh", layout.release(rid), READY, built_marker, layout.link(link), *shared])
    facts: dict = {"ready": False, "built": "", "missing": [], "link": None}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "ready":
            facts["ready"] = value == "1"
        elif key == "built":
            facts["built"] = value.strip()
        elif key == "missing":
            facts["missing"].append(value)
        elif key == "link":
            facts["link"] = value or None
    return facts


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
