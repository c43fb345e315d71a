"""source: the project's repository (git or Mercurial): which commit a wanted revision names, and the tree
of that commit as a tar stream (the archive step normalises it). A wanted revision that starts with '-' is
refused; git gets it before a `--`, hg as the value of -r: never where it could be read as an option."""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import localcmd
from ..config import Project
from ..errors import StepError


@dataclass(frozen=True)
class Revision:
    scm: str
    commit: str
    time: int


def _git(source: Path, *args: str) -> localcmd.Done:
    # GIT_OPTIONAL_LOCKS=0: `git status` leaves the repository's index as it is (no stat refresh written
    # back): reading the source writes nothing there (plan:<stage> promises so)
    return localcmd.call(["git", "-C", str(source), *args], env={"GIT_OPTIONAL_LOCKS": "0"})


def _hg(source: Path, *args: str) -> localcmd.Done:
    return localcmd.call(["hg", "--cwd", str(source), "--config", "ui.archivemeta=false", *args])


def detect_scm(project: Project) -> str:
    if not project.source.is_dir():
        raise StepError(f"archive: [project] source {project.source} is not a directory; fix source = in stages.ini")
    if project.scm != "auto":
        return project.scm
    if _git(project.source, "rev-parse", "--show-toplevel").code == 0:
        return "git"
    if _hg(project.source, "root").code == 0:   # exit 127 when hg is not installed here
        return "hg"
    raise StepError(f"archive: {project.source} is neither a git nor a Mercurial repository; fix source =")


def revision_args(scm: str, wanted: str) -> list[str]:
    """The arguments after `git -C <source>` / `hg --cwd <source>` that resolve `wanted` to a commit and its
    time. `wanted` never stands where the tool would read an option: refused when it starts with '-', and
    git gets it before a `--`, hg as the value of -r."""
    if wanted.startswith("-") or any(ord(c) < 32 for c in wanted):
        raise StepError(f"archive: revision {wanted!r} starts with '-' or holds a control character; "
                        "name a branch, tag or commit")
    if scm == "git":
        return ["log", "-1", "--format=%H %ct", (wanted or "HEAD") + "^{commit}", "--"]
    return ["log", "-r", wanted or ".", "--template", "{node} {date|hgdate}\n"]


def _is_repository(scm: str, source: Path) -> bool:
    res = _git(source, "rev-parse", "--git-dir") if scm == "git" else _hg(source, "root")
    if res.code == localcmd.NOT_FOUND:
        program = "git" if scm == "git" else "hg"
        raise StepError(f"archive: {program} is not installed on this machine (scm = {scm}); install it or "
                        "change scm = in stages.ini")
    return res.code == 0


def resolve_revision(project: Project, wanted: str) -> Revision:
    """wanted: DEPLOY_REVISION, else [project] revision, else '' for the repository's current head."""
    scm = detect_scm(project)
    args = revision_args(scm, wanted)
    if project.scm != "auto" and not _is_repository(scm, project.source):
        name = "git" if scm == "git" else "Mercurial"
        raise StepError(f"archive: [project] source {project.source} is no {name} repository (scm = {scm}); "
                        "fix source = or scm = in stages.ini")
    res = _git(project.source, *args) if scm == "git" else _hg(project.source, *args)
    if res.code != 0 or not res.out.split():
        raise StepError(f"archive: revision {wanted or 'HEAD'!r} not found in {project.source} ({scm}); "
                        "set DEPLOY_REVISION or [project] revision to an existing one")
    commit, when = res.stdout.split()[:2]
    if len(commit) != 40:
        raise StepError(f"archive: revision {wanted!r} is ambiguous in {project.source}")
    return Revision(scm, commit, int(when))


def export_tree(project: Project, rev: Revision) -> bytes:
    if rev.scm == "git":
        return _git_tree(project.source, rev.commit, "")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "a.tar"
        res = _hg(project.source, "archive", "-r", rev.commit, "-t", "tar", "-p", ".", str(out))
        if res.code == 0:  # hg archives the whole repository: keep the project's subtree
            root = os.fsdecode(_hg(project.source, "root").out).strip()
            return _subtree(out.read_bytes(), root, project.source)
    raise StepError(f"archive: {rev.scm} archive failed: {res.last_line()}")


def _subtree(raw: bytes, root: str, source: Path) -> bytes:
    prefix = os.path.relpath(source.resolve(), Path(root).resolve())
    if prefix == ".":
        return raw
    prefix = prefix.replace(os.sep, "/") + "/"
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as src, tarfile.open(fileobj=out, mode="w:") as dst:
        for m in src:
            name = m.name[2:] if m.name.startswith("./") else m.name
            if name.startswith(prefix):
                m.name = name[len(prefix):]
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return out.getvalue()


# -- git submodules: shipped at the commit the revision records (Deployer's git_recursive) -------------------
def submodules(source: Path, commit: str) -> list[tuple[str, str]]:
    """(path, commit) of every submodule (gitlink) in `commit`'s tree under source."""
    res = _git(source, "ls-tree", "-r", "-z", commit)
    if res.code != 0:
        raise StepError(f"archive: git ls-tree {commit[:12]} failed in {source}: {res.last_line()}")
    return parse_gitlinks(res.out.decode(errors="surrogateescape"))


def parse_gitlinks(text: str) -> list[tuple[str, str]]:
    """`git ls-tree -r -z` output -> (path, commit) of its gitlinks (mode 160000)."""
    links = []
    for entry in filter(None, text.split("\0")):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[0] == "160000" and parts[1] == "commit":
            links.append((path, parts[2]))
    return links


def _git_tree(source: Path, commit: str, prefix: str) -> bytes:
    """`git archive` of commit, with each submodule's own tree at its recorded commit in its place (git
    archive alone leaves an empty directory there), recursively."""
    res = _git(source, "archive", "--format=tar", *([f"--prefix={prefix}"] if prefix else []), commit)
    if res.code != 0:
        raise StepError(f"archive: git archive failed: {res.last_line()}")
    subs = submodules(source, commit)
    if not subs:
        return res.out
    trees = [res.out]
    for path, sub_commit in subs:
        where = source / path
        top = _git(where, "rev-parse", "--show-toplevel")
        known = _git(where, "cat-file", "-e", f"{sub_commit}^{{commit}}") if top.code == 0 else top
        if top.code != 0 or Path(os.fsdecode(top.out).strip()).resolve() != where.resolve() or known.code != 0:
            raise StepError(f"archive: submodule {prefix}{path} (commit {sub_commit[:12]}) is not checked out in "
                            f"{source}; run git submodule update --init --recursive there (the release ships each "
                            "submodule at the commit the revision records)")
        trees.append(_git_tree(where, sub_commit, f"{prefix}{path}/"))
    return _concat(trees)


def _concat(trees: list[bytes]) -> bytes:
    """One tar of several, a name kept from the first tar that has it."""
    out, seen = io.BytesIO(), set()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        for raw in trees:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as src:
                for m in src:
                    name = m.name.rstrip("/")
                    if name in seen:
                        continue
                    seen.add(name)
                    dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return out.getvalue()


# -- what does not ship ----------------------------------------------------------------------------------
def changed_paths(project: Project, scm: str) -> list[str]:
    """The working tree's uncommitted changes under source (modified, added, removed, untracked)."""
    if scm == "git":
        res = _git(project.source, "status", "--porcelain=v1", "-z", "--untracked-files=normal", "--", ".")
        entries, paths = res.stdout.split("\0"), []
        while entries:
            entry = entries.pop(0)
            if len(entry) > 3:
                paths.append(entry[3:])
                if entry[0] in "RC" and entries:
                    entries.pop(0)   # a rename's or copy's source path
        return paths if res.code == 0 else []
    res = _hg(project.source, "status", "--print0", ".")
    return [e[2:] for e in res.stdout.split("\0") if len(e) > 2] if res.code == 0 else []


def dirty_note(project: Project, rev: Revision) -> str | None:
    """One line when the working tree has uncommitted changes: what ships is the commit."""
    paths = changed_paths(project, rev.scm)
    if not paths:
        return None
    shown = ", ".join(paths[:5]) + (f" (+{len(paths) - 5} more)" if len(paths) > 5 else "")
    return (f"note: {project.source} has uncommitted changes, which do not ship (what ships is commit "
            f"{rev.commit[:12]}; commit them and run again to ship them): {shown}")
