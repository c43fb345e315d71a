"""archive: the revision as a reproducible tarball (same revision -> same bytes), plus the wheelhouse.

The tar stream of `git archive` / `hg archive` is rewritten member by member: owner, times and order are
normalised, and anything that could escape the release directory (absolute paths, '..', links that leave
the tree, devices) is refused here, once, before any host sees it.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import Project
from ..errors import StepError
from ..layout import TOOL_NAMES, release_id
from ..runtime.common import sha256_file
from . import buildout as buildout_step
from . import wheelhouse
from .facts import interpreter_key
from .source import Revision, export_tree


@dataclass(frozen=True)
class Release:
    id: str
    revision: str
    sha256: str
    wheels: str = ""        # digest of the wheelhouse (build = pip or buildout), else ""
    python: str = ""        # the interpreter the wheelhouse is for (facts.interpreter_key), else ""

    def to_json(self) -> str:
        data = asdict(self)
        if not data["python"]:   # a release archived before the key existed keeps its json (the hosts' proof)
            del data["python"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Release":
        return cls(**json.loads(text))


def member_problem(name: str, kind: str, linkname: str = "") -> str | None:
    """Why a tar member may not be unpacked into a release, or None. kind: file, dir, symlink, other."""
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        return f"{name!r} leaves the release directory"
    if parts[0] in TOOL_NAMES:
        return (f"{parts[0]!r} is a name the deploy tool writes into every release (its ready marker, "
                "release record, env files, REVISION, venv link); rename or remove it in the repository")
    if kind == "symlink":
        if linkname.startswith("/"):
            return f"link {name!r} points at an absolute path {linkname!r}"
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), linkname))
        if target == ".." or target.startswith("../"):
            return f"link {name!r} -> {linkname!r} leaves the release directory"
    elif kind not in ("file", "dir"):
        return f"{name!r} is not a regular file, directory or symlink"
    return None


def link_escapes(name: str, links: dict[str, str]) -> bool:
    """Does the symlink `name` resolve outside the tree, following the other symlinks of the archive
    (a chain of links that each stay inside can still lead out)?"""
    todo = links[name].split("/")
    path = name.split("/")[:-1]
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not path:
                return True
            path.pop()
            continue
        path.append(part)
        joined = "/".join(path)
        if joined in links:
            hops += 1
            if hops > 40 or links[joined].startswith("/"):
                return True
            path.pop()
            todo = links[joined].split("/") + todo
    return False


def _normalise(raw_tar: bytes, mtime: int, out) -> int:
    """Rewrite a tar stream deterministically into out; return the member count."""
    count = 0
    with tarfile.open(fileobj=io.BytesIO(raw_tar), mode="r:") as src:
        links = {(m.name[2:] if m.name.startswith("./") else m.name).rstrip("/"): m.linkname
                 for m in src if m.issym()}
    for name in links:
        if link_escapes(name, links):
            raise StepError(f"archive: refused: link {name!r} -> {links[name]!r} leaves the release "
                            "directory (through other links); fix the repository")
    with tarfile.open(fileobj=io.BytesIO(raw_tar), mode="r:") as src, \
            tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            name = (m.name[2:] if m.name.startswith("./") else m.name).rstrip("/")
            if not name or name == ".":
                continue
            kind = "file" if m.isreg() else "dir" if m.isdir() else "symlink" if m.issym() else "other"
            problem = member_problem(name, kind, m.linkname)
            if problem:
                raise StepError(f"archive: refused: {problem}; fix the repository")
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = m.type, m.linkname, m.size if m.isreg() else 0
            info.mode = 0o755 if (m.isdir() or m.mode & 0o111) else 0o644
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            dst.addfile(info, src.extractfile(m) if m.isreg() else None)
            count += 1
    return count


def make_archive(project: Project, rev: Revision, build_dir: Path, buildout_configs: tuple[str, ...] = (),
                 python: dict[str, str] | None = None) -> Release:
    """build/<id>.tar.gz (+ build/<id>.json) and, for build = pip or buildout, the wheelhouse. Idempotent.
    buildout_configs: every config a stage runs (build = buildout), else [project] buildout_config.
    python: the hosts' interpreter (facts.parse_interpreter), which the wheelhouse is built for."""
    rid = release_id(project.name, rev.time, rev.commit)
    build_dir.mkdir(parents=True, exist_ok=True)
    raw = export_tree(project, rev)
    target = build_dir / f"{rid}.tar.gz"
    tmp = target.with_suffix(".partial")
    try:
        with open(tmp, "wb") as f:
            # mtime=0 and no file name in the gzip header: the bytes depend on the revision only
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
                _normalise(raw, rev.time, gz)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    sha, wheels, key = sha256_file(target), "", ""
    if project.build in ("pip", "buildout"):
        assert python is not None, "the hosts' interpreter is read before a wheelhouse is built"
        key = interpreter_key(python)
    if project.build == "pip":
        wheels = build_wheelhouse(project, target, sha, build_dir, python)
    if project.build == "buildout":
        wheels = buildout_step.build_wheelhouse(target, build_dir, buildout_configs or (project.buildout_config,),
                                                wheelhouse_path, python)
    release = Release(rid, rev.commit, sha, wheels, key)
    (build_dir / f"{rid}.json").write_text(release.to_json())
    return release


def local_release(build_dir: Path, rid: str) -> Release | None:
    """The release built here before, if its archive is still intact."""
    meta, archive = build_dir / f"{rid}.json", build_dir / f"{rid}.tar.gz"
    try:
        release = Release.from_json(meta.read_text())
    except (OSError, ValueError, TypeError):
        return None
    if not archive.is_file() or sha256_file(archive) != release.sha256:
        return None
    if release.wheels and not wheelhouse_path(build_dir, release.wheels).is_file():
        return None
    return release


def wheelhouse_path(build_dir: Path, digest: str) -> Path:
    return build_dir / f"wheels-{digest}.tar"


def build_wheelhouse(project: Project, archive: Path, sha: str, build_dir: Path, python: dict[str, str]) -> str:
    """The requirements (with their -r / -c includes, from the archive) resolved for the hosts' interpreter
    and built into wheels ONCE on this machine; returns its digest (which covers that interpreter)."""
    files, local = wheelhouse.requirement_files(wheelhouse.archive_reader(archive), project.requirements)
    digest = wheelhouse.wheelhouse_digest(interpreter_key(python), files, sha if local else "")
    target = wheelhouse_path(build_dir, digest)
    if not target.is_file():
        wheelhouse.build_wheelhouse(archive, target, project.requirements, python)
    return digest
