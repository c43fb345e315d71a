"""The stage links on a host (sites/<stage> -> ../releases/<id>): read, and moved by rename (temp link +
mv -T), never by rm + ln. rename(2) replaces the link in one step: a reader sees the old target or the new
one, never nothing."""
from __future__ import annotations

import posixpath
import secrets

from ..errors import StepError
from ..layout import Layout
from ..transport import Transport

# $1 deploy_root, $2 link (relative to root), $3 new target (relative to the link's dir), $4 the link's dir,
# $5 a suffix of the temp link unique to this call (run by the session's shell itself: no `sh`, no dirname)
SWITCH = ('set -e; cd "$1"; [ -d "$4" ] || mkdir -p -- "$4"; tmp="$2.tmp.$5"; ln -s -- "$3" "$tmp"; '
          'mv -T -- "$tmp" "$2"')


def read_link(t: Transport, layout: Layout, link: str) -> str | None:
    known, target = known_link(t, link)
    if known:
        return target
    code, out, _ = t.call(["readlink", "--", layout.link(link)])
    target = out.strip() if code == 0 else None
    remember_link(t, link, target)
    return target


def known_link(t: Transport, link: str) -> tuple[bool, str | None]:
    """(True, target) when this run, holding the host's lock, read or wrote the link before; else (False, None)."""
    links = t.links
    return (True, links[link]) if links is not None and link in links else (False, None)


def remember_link(t: Transport, link: str, target: str | None) -> None:
    """What the link holds, as this run just read or wrote it (kept only while the run holds the lock, and
    only a target that every reader reads alike: one line, no surrounding blanks)."""
    if t.links is not None:
        if target is None or (target == target.strip() and "\n" not in target):
            t.links[link] = target
        else:
            t.links.pop(link, None)


def release_of(target: str | None) -> str | None:
    """The release id a link target names (../releases/<id>), else None."""
    if not target:
        return None
    parts = posixpath.normpath(target).split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "releases" else None


def set_link(t: Transport, layout: Layout, link: str, target: str | None) -> None:
    """Point link at target (a relative path), or remove it when target is None (undo of a first switch)."""
    if t.links is not None:
        t.links.pop(link, None)   # until the command says it is done
    if target is None:
        t.run(["rm", "-f", "--", layout.link(link)])
    else:
        t.run(["sh", "-c", SWITCH, "sh", layout.root, link, target, posixpath.dirname(link) or ".",
               secrets.token_hex(4)])
    remember_link(t, link, target)


def switch_link(t: Transport, layout: Layout, link: str, rid: str) -> None:
    set_link(t, layout, link, layout.link_target(link, rid))


def stage_releases(session, stage, what: str) -> list[str | None]:
    """The release each host of the stage runs (by its link), in host order; None where it has none."""
    targets = session.hosts.each(stage.hosts, lambda t: read_link(t, session.layout, stage.link),
                                 f"{what}: reading {stage.link}")
    return [release_of(x) for x in targets]


def live_release(session, stage, what: str) -> str:
    """The release behind the stage's link; all its hosts must agree."""
    rids = stage_releases(session, stage, what)
    missing = [str(h) for h, r in zip(stage.hosts, rids) if r is None]
    if missing:
        raise StepError(f"{what}: stage {stage.name} has no release on {', '.join(missing)} "
                        f"({stage.link} is missing); run its deploy or promote first")
    if len(set(rids)) > 1:
        detail = ", ".join(f"{h}={r}" for h, r in zip(stage.hosts, rids))
        raise StepError(f"{what}: the hosts of stage {stage.name} disagree ({detail}); "
                        f"rerun the deploy or promote of {stage.name} first")
    return rids[0]
