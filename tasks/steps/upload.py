"""upload: the release's archive (and wheelhouse) on a host, checked by sha256 on arrival.

<root>/.deploy/artifacts/<id>.json is written last and only after the digest matched: it is the proof
that the host holds the archive, so a re-run skips hosts that have it.
"""
from __future__ import annotations

import base64
import posixpath
from pathlib import Path
from typing import Sequence

from .. import failpoints
from ..errors import StepError
from ..hostside import script
from ..layout import Layout
from ..runtime.common import read_text, write_file
from ..transport import INLINE_MAX, Cmd, CommandFailed, Transport
from .archive import Release, wheelhouse_path
from .wheelhouse import check_interpreter

# Prints "ok" when the artifact's proof ($1) holds exactly $3 (one line, no newline: read reaches the end
# of the file) and the wheelhouse ($2, if any) is unpacked. Shell builtins only: no program runs.
HAS_SCRIPT = ('p=; if IFS= read -r p < "$1"; then exit 0; fi 2>/dev/null; [ -n "$p" ] && [ "$p" = "$3" ] && '
              '{ [ -z "$2" ] || [ -f "$2/.complete" ]; } && echo ok')

# stdin: the archive. $1 artifact path, $2 its sha256, $3 proof path, $4 proof (release json) or "" to
# leave the proof for later (the wheelhouse comes first). Prints the digest that arrived. It reads all of
# stdin whatever happens (a second cat drains what a failed one left), so the session has nothing to drain.
RECEIVE = script("upload_receive.sh")
# RECEIVE with its stdin as base64 text: a small archive travels inside the command's text (one exchange;
# a stream is two: the command's "go", then the bytes)
RECEIVE_TEXT = "base64 -d | {\n" + RECEIVE + "\n}"

UNPACK_WHEELS = ('set -e; rm -rf "$2.tmp"; mkdir -p "$2.tmp"; tar -xf "$1" -C "$2.tmp"; rm -f "$1"; '
                 'touch "$2.tmp/.complete"; rm -rf "$2"; mv "$2.tmp" "$2"')


def has_argv(layout: Layout, release: Release) -> list[str]:
    """What has_release asks a host (also sent ahead with the lock's take: nodes.check_reads)."""
    wheels = layout.wheels(release.wheels) if release.wheels else ""
    return ["sh", "-c", HAS_SCRIPT, "sh", layout.artifact_proof(release.id), wheels, release.to_json()]


def has_release(t: Transport, layout: Layout, release: Release) -> bool:
    """The host holds the release's archive. The answer of the same read kept since this run's last command
    to the host is taken (the check's, for the upload's action: Transport.call_kept)."""
    return t.call_kept(has_argv(layout, release))[1].strip() == "ok"


def upload_release(t: Transport, layout: Layout, release: Release, build_dir: Path, source=None,
                   promoted: bool = False, then: Sequence[tuple[object, Cmd]] = ()) -> bool:
    """source: None (the deployer sends the files through the run's session) or a steps.download
    StoreDownload (the host pulls them from the S3 store, which checks their sha256 itself).
    promoted: the release was archived for other hosts; a host whose python3 is not the one its
    wheelhouse is for is refused before anything is sent. then: reads (the next checks') sent after the
    archive when it travels inside the command's text and is the upload's last command: their answers kept.
    True when the host got the archive now, False when it held it already."""
    if has_release(t, layout, release):
        return False
    if promoted and release.python:
        check_interpreter(t, release.python, release.id)
    if source is None:
        _receive(t, layout, release, build_dir, then)
        return True
    art = layout.artifact(release.id)
    t.run(["mkdir", "-p", posixpath.dirname(art)])
    source.fetch(t, f"{release.id}.tar.gz", art + ".partial")
    failpoints.hit("upload.mid_transfer", t.host)
    t.run(["mv", "-f", "--", art + ".partial", art])
    if release.wheels:
        target = layout.wheels(release.wheels)
        if t.call(["test", "-f", target + "/.complete"])[0] != 0:
            t.run(["mkdir", "-p", posixpath.dirname(target)])
            source.fetch(t, wheelhouse_path(build_dir, release.wheels).name, target + ".tar")
            t.run(["sh", "-c", UNPACK_WHEELS, "sh", target + ".tar", target])
    write_file(t, layout.artifact_proof(release.id), release.to_json().encode(), "644", public=True)
    return True


def _receive(t: Transport, layout: Layout, release: Release, build_dir: Path,
             then: Sequence[tuple[object, Cmd]] = ()) -> None:
    art, proof = layout.artifact(release.id), layout.artifact_proof(release.id)
    # one command: receive, check the digest, keep (and, without a wheelhouse, write the proof)
    argv = ["sh", "-c", RECEIVE, "sh", art, release.sha256, proof, "" if release.wheels else release.to_json()]
    local = build_dir / f"{release.id}.tar.gz"
    if (local.stat().st_size + 2) // 3 * 4 <= INLINE_MAX:
        text = (["sh", "-c", RECEIVE_TEXT, *argv[3:]], base64.b64encode(local.read_bytes()))
        if then and not release.wheels and not failpoints.armed("upload.mid_transfer"):
            (code, out, err), = t.read_batch(then, [Cmd(*text)])
        else:
            code, out, err = t.call(*text)
    else:
        code, out, err = t.send(argv, local, reads_all=True)
    if code != 0:
        explain_no_space(t, local, art + ".partial", err)
        raise CommandFailed(t.host, ["upload", art], code, err)
    failpoints.hit("upload.mid_transfer", t.host)
    digest = out.strip()
    if digest != release.sha256:
        raise StepError(f"{t.host}: upload: archive {release.id} arrived with sha256 {digest[:12]}, "
                        f"expected {release.sha256[:12]}; run again")
    if not release.wheels:
        return
    target = layout.wheels(release.wheels)
    if t.call(["test", "-f", target + "/.complete"])[0] != 0:
        t.run(["mkdir", "-p", posixpath.dirname(target)])
        put_file(t, wheelhouse_path(build_dir, release.wheels), target + ".tar")
        t.run(["sh", "-c", UNPACK_WHEELS, "sh", target + ".tar", target])
    write_file(t, proof, release.to_json().encode(), "644", public=True)


def parse_df_available(text: str) -> int | None:
    """`df -Pk` output -> the available KiB of the file system (None when unreadable)."""
    lines = [ln.split() for ln in text.strip().splitlines()[1:]]
    try:
        return int(lines[-1][3])
    except (IndexError, ValueError):
        return None


def put_file(t: Transport, local: Path, remote: str) -> None:
    """Copy a file to the host; a failure for want of space says so."""
    try:
        t.put(local, remote)
    except CommandFailed as exc:
        explain_no_space(t, local, remote, exc.stderr)
        raise


def explain_no_space(t: Transport, local: Path, remote: str, stderr: str) -> None:
    """After a failed copy: remove what arrived of it and, when the host is out of space, say so."""
    t.call(["rm", "-f", "--", remote])  # of no use, and it takes the space
    need = local.stat().st_size // 1024 + 1
    free = parse_df_available(t.call(["df", "-Pk", "--", posixpath.dirname(remote)])[1])
    if "No space left" in stderr or (free is not None and free < need):
        raise StepError(f"{t.host}: upload: the host is out of disk space in {posixpath.dirname(remote)} "
                        f"({free} KiB free, {local.name} needs {need} KiB); free some space there (old "
                        "releases, db_backup/) and run again") from None


def fetch_release(t: Transport, layout: Layout, rid: str, build_dir: Path) -> Release:
    """Bring a release that a host holds (e.g. the one test runs) into build/, to ship it on unchanged."""
    text = read_text(t, layout.artifact_proof(rid))
    if not text:
        raise StepError(f"{t.host}: release {rid} has no archive in {posixpath.dirname(layout.artifact(rid))}; "
                        "deploy it again")
    release = Release.from_json(text)
    build_dir.mkdir(parents=True, exist_ok=True)
    t.get(layout.artifact(rid), build_dir / f"{rid}.tar.gz")
    if release.wheels and not wheelhouse_path(build_dir, release.wheels).is_file():
        tmp = build_dir / f"wheels-{release.wheels}.partial"
        t.run(["tar", "-cf", layout.wheels(release.wheels) + ".out.tar", "-C", layout.wheels(release.wheels),
               "--exclude", ".complete", "."])
        t.get(layout.wheels(release.wheels) + ".out.tar", tmp)
        t.call(["rm", "-f", layout.wheels(release.wheels) + ".out.tar"])
        tmp.rename(wheelhouse_path(build_dir, release.wheels))
    (build_dir / f"{rid}.json").write_text(release.to_json())
    return release
