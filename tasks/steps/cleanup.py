"""cleanup: old releases removed, never one that a link points at or that a rollback could return to, nor
the one a stage's last (failed) switch tried, which a rerun reuses; with each release, its generations of the
stage dirs (shared/<stage>/<id>, the STAGE_DIR its env files name).

What to keep is read from the links and the release log, never from counting directories or their mtimes
(Capistrano #1907: failed releases counted toward keep_releases and the last good one was deleted).
"""
from __future__ import annotations

from ..hostside import script
from ..layout import RELEASE_GLOB, Layout, is_release_id
from ..runtime.known_links import KnownLinks
from ..transport import Cmd, CommandFailed, Transport
from .links import release_of
from .releaselog import good_releases, parse_log, rollback_target

# $1 root, $2 the release log, then the links: prints every link target, then the release dirs, then the log
# (the release dirs by the shell's own glob, the log only when it exists: no ls, no cat of nothing)
SCAN = ('cd "$1" || exit 0; log=$2; shift 2; for l in "$@"; do readlink -- "$l" 2>/dev/null; done; '
        'echo --; for r in releases/*; do if [ -e "$r" ] || [ -L "$r" ]; then echo "${r#releases/}"; fi; done; '
        'echo --; if [ -e "$log" ]; then cat -- "$log" 2>/dev/null; fi; true')


# $1 releases dir, $2 venvs dir, $3 the number of paths to remove (release dirs and their artifacts), those
# paths, then the stages' stage-dir roots (shared/<stage>): a generation there (<root>/<release id>, the
# STAGE_DIR of that release; <id>.tmp, a copy a killed build left) goes when its release is gone, so one a
# kept release runs with always stays (removed after its release: a run killed between leaves it to the
# next cleanup). Then every venv that no release left links as its .venv goes too (test -ef compares the
# link's target by inode): one a kept release uses always stays, and so does one a half-built release links.
REMOVE = script("cleanup_remove.sh").replace("@RID@", RELEASE_GLOB)


def releases_to_remove(existing: list[str], linked: set[str], log: list[dict], keep: int) -> list[str]:
    """Pure: which release dirs may go. Kept: every linked release, and per stage the `keep` newest good
    ones plus whatever rollback would return to, and the release of its last switch when that failed (the
    run was undone: a rerun after the fix reuses the release, its venv and artifact instead of rebuilding)."""
    keep_set = set(linked)
    for stage in {r.get("stage") for r in log if r.get("stage")}:
        good = good_releases(log, stage)
        keep_set.update(good[-keep:])
        last = next(r for r in reversed(log) if r.get("stage") == stage)
        if last.get("result") == "failed" and last.get("release"):
            keep_set.add(last["release"])
        current = next((r for r in reversed(log) if r.get("stage") == stage and r.get("result") in
                        ("ok", "rollback")), {}).get("release")
        target = rollback_target(log, stage, current)
        if target:
            keep_set.add(target)
    # a release never switched, whose failed switch is not its stage's last, or marked bad goes too, unless
    # a link points at it
    return sorted(r for r in existing if is_release_id(r) and r not in keep_set)


def parse_scan(text: str) -> tuple[set[str], list[str], list[dict]]:
    """SCAN's output -> (the releases the links point at, the release dirs, the release log's records)."""
    targets, _, rest = text.partition("--\n")
    names, _, log = rest.partition("--\n")
    return {release_of(x) for x in targets.split()} - {None}, names.split(), parse_log(log)


def clean_releases(t: Transport, layout: Layout, links: list[str], keep: int, venvs: bool = True,
                   stages: tuple[str, ...] = (), known: KnownLinks | None = None) -> list[str]:
    """Remove the releases nobody needs, the stages' stage-dir generations of releases that are gone (and,
    with venvs, the shared venvs no release left links)."""
    return remove_releases(t, layout, links, keep, t.run(scan_argv(layout, links, known, t)), venvs, stages, known)


def scan_argv(layout: Layout, links: list[str], known: KnownLinks | None, t: Transport) -> list[str]:
    """SCAN as clean_releases sends it: a link this run moved or read while it holds the lock is not read
    again (runtime/known_links.py)."""
    ask = [link for link in links if not (known.get(t.host, link)[0] if known is not None else False)]
    return ["sh", "-c", SCAN, "sh", layout.root, layout.log, *ask]


def remove_releases(t: Transport, layout: Layout, links: list[str], keep: int, scanned: str, venvs: bool = True,
                    stages: tuple[str, ...] = (), known: KnownLinks | None = None, then=()) -> list[str]:
    """clean_releases after its SCAN answered `scanned` (sent by scan_argv, with the same known links).
    then: reads [(key, Cmd)] sent after REMOVE in the same exchange, their answers kept (none when REMOVE
    does not run)."""
    seen = [known.get(t.host, link) if known is not None else (False, None) for link in links]
    linked, names, log = parse_scan(scanned)
    linked |= {release_of(target) for k, target in seen if k} - {None}
    doomed = releases_to_remove(names, linked, log, keep)
    paths = [p for rid in doomed for p in (layout.release(rid), layout.artifact(rid),
                                           layout.artifact_proof(rid))]
    # an orphan generation (its release removed by a killed run) waits for the next cleanup that runs REMOVE
    if doomed or venvs:
        argv = ["sh", "-c", REMOVE, "sh", layout.releases, layout.venvs, str(len(paths)), *paths,
                *[layout.stage_dirs(name) for name in stages]]
        code, _, err = t.read_batch(then, [Cmd(argv)])[0]
        if code != 0:
            raise CommandFailed(t.host, argv, code, err)
    return doomed
