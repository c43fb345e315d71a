"""The stage links on a host (sites/<stage> -> ../releases/<id>): read, and moved by rename (temp link +
mv -T), never by rm + ln. rename(2) replaces the link in one step: a reader sees the old target or the new
one, never nothing."""
from __future__ import annotations

import posixpath
import secrets
from typing import Sequence

from ..errors import StepError
from ..hostside import script
from ..layout import Layout
from ..runtime.common import last_line
from ..runtime.known_links import KnownLinks
from ..runtime.lock import LOST, LockLost
from ..transport import Cmd, CommandFailed, Transport

# $1 deploy_root, $2 link (relative to root), $3 new target (relative to the link's dir; "" to remove the
# link), $4 the link's dir, $5 a suffix of the temp names unique to this call, $6 the release's env file for
# the stage and $7 the version to make it ("" to leave it, "-" to remove it, "?<version>" only if it is
# there); run by the session's shell
# itself (no `sh`, no dirname). Refused (exit 76, nothing written) when a directory on the way from root to
# the link is a symlink: a link is never written outside deploy_root. A temporary link left by a run
# killed between its ln and its mv is removed; the env file is moved before the link (a release that goes
# live has its env in place; one that stays live changes it in this one rename), and a failed mv leaves no
# temporary link behind.
SWITCH = script("links_switch.sh")
UNSAFE = 76   # SWITCH's exit code when a directory on the way to the link is a symlink


class UnsafeLink(StepError):
    """A directory on the way to a stage's link is a symlink: the link would be written elsewhere."""


def link_argv(layout: Layout, link: str) -> list[str]:
    """What read_link asks a host (a read sent ahead: nodes.check_reads)."""
    return ["readlink", "--", layout.link(link)]


def read_link(t: Transport, layout: Layout, link: str, known: KnownLinks | None = None) -> str | None:
    seen, target = known.get(t.host, link) if known is not None else (False, None)
    if seen:
        return target
    target = target_of(t.call_kept(link_argv(layout, link)))
    if known is not None:
        known.remember(t.host, link, target)
    return target


def target_of(answer: tuple[int, str, str]) -> str | None:
    """link_argv's answer -> the link's target (None: there is no link)."""
    code, out, _ = answer
    return out.strip() if code == 0 else None


def release_of(target: str | None) -> str | None:
    """The release id a link target names (../releases/<id>), else None."""
    if not target:
        return None
    parts = posixpath.normpath(target).split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "releases" else None


def set_link(t: Transport, layout: Layout, link: str, target: str | None, env: tuple[str, str] | None = None,
             guard=None, known: KnownLinks | None = None, first: Cmd | None = None, then: Sequence[Cmd] = (),
             reads: Sequence[tuple[object, Cmd]] = (), answers: list | None = None, on_line=None):
    """Point link at target (a relative path), or remove it when target is None (undo of a first switch);
    env: (a release's env file for the stage, the version to make it, or "-" to remove it), moved first, in
    the same command. guard: a function making the command run only while this run holds the lock
    (runtime/lock.py guarded). known: the run's known links (runtime/known_links.py), kept up to date.
    first: a command sent before it in the same exchange (the switch's intent): the link moves only when
    that one succeeded; then its answer (exit code, stdout, stderr) is returned, and the link was not
    touched when that code is not 0. then: commands sent after it in the same exchange (the switch's
    record; mark them if_ok to run only once the link moved), their answers appended to `answers` (SKIPPED
    where they did not run); reads: asked last in that exchange, their answers kept (Transport.read_batch);
    on_line: sees the exchange's lines as they come (a reload sent in `then`: its pid line)."""
    if known is not None:
        known.forget(t.host, link)
    argv = ["sh", "-c", SWITCH, "sh", layout.root, link, target or "", posixpath.dirname(link) or ".",
            secrets.token_hex(4), *(env or ("", ""))]
    sent = guard(argv) if guard else argv
    if first is None and not then:
        before, (code, _, err) = None, t.call(sent)
    else:
        got = t.read_batch(reads, [*([first] if first else []), Cmd(sent, if_ok=first is not None), *then], on_line)
        before, got = (got[0], got[1:]) if first else (None, got)
        (code, _, err), rest = got[0], got[1:]
        if answers is not None:
            answers.extend(rest)
        if before is not None and before[0] != 0:
            return before
    if guard and code == LOST:
        raise LockLost(f"{t.host}: {last_line(err)}")
    if code == UNSAFE and err.startswith("unsafe "):
        path, _, to = err[len("unsafe "):].strip().partition(" ")
        raise UnsafeLink(unsafe_message(t, layout, path, to))
    if code != 0:
        raise CommandFailed(t.host, argv, code, err)
    if known is not None:
        known.remember(t.host, link, target)
    return before


def unsafe_message(t: Transport, layout: Layout, path: str, to: str) -> str:
    return (f"{t.host}: {layout.join(path)} is a symlink (to {to}): a stage link under it would be written "
            f"outside {layout.root}; refused, nothing was switched. Make {layout.join(path)} a directory of "
            f"{layout.root} again, then run again")


def switch_link(t: Transport, layout: Layout, link: str, rid: str, env: tuple[str, str] | None = None,
                guard=None, known: KnownLinks | None = None, first: Cmd | None = None, then: Sequence[Cmd] = (),
                reads: Sequence[tuple[object, Cmd]] = (), answers: list | None = None, on_line=None):
    return set_link(t, layout, link, layout.link_target(link, rid), env, guard, known, first, then, reads, answers,
                    on_line)


def stage_releases(session, stage, what: str) -> list[str | None]:
    """The release each host of the stage runs (by its link), in host order; None where it has none."""
    targets = session.hosts.each(stage.hosts, lambda t: read_link(t, session.layout, stage.link, session.known_links),
                                 f"{what}: reading {stage.link}", wide=True)
    return [release_of(x) for x in targets]


def live_release(session, stage, what: str) -> str:
    """The release behind the stage's link; all its hosts must agree."""
    return agreed_release(stage, stage_releases(session, stage, what), what)


def agreed_release(stage, rids: list[str | None], what: str) -> str:
    """The release every host of the stage runs (rids: each host's, in host order), else StepError."""
    missing = [str(h) for h, r in zip(stage.hosts, rids) if r is None]
    if missing:
        raise StepError(f"{what}: stage {stage.name} has no release on {', '.join(missing)} "
                        f"({stage.link} is missing); run its deploy or promote first")
    if len(set(rids)) > 1:
        detail = ", ".join(f"{h}={r}" for h, r in zip(stage.hosts, rids))
        raise StepError(f"{what}: the hosts of stage {stage.name} disagree ({detail}); "
                        f"rerun the deploy or promote of {stage.name} first")
    return rids[0]
