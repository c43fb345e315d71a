"""archive: real git and Mercurial repositories in temp dirs -> resolve_revision and make_archive.

build = none throughout, so no wheelhouse is built (no pip, no network)."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from doit_stages.config import Project, load_config
from doit_stages.errors import StepError
from doit_stages.steps.archive import local_release, make_archive
from doit_stages.steps.source import Revision, resolve_revision
from tests.lab.stages_ini import CODE_ONLY, THIS_MACHINE, stages_ini

GIT_DATE = "1700000000 +0000"


@pytest.fixture(autouse=True)
def scm_env(monkeypatch, tmp_path):
    """Both our commands and the tool's see the same, isolated SCM configuration."""
    (tmp_path / "gitconfig").write_text("")
    for k, v in {"GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
                 "GIT_AUTHOR_NAME": "Tess Ter", "GIT_AUTHOR_EMAIL": "tess@example.com",
                 "GIT_COMMITTER_NAME": "Tess Ter", "GIT_COMMITTER_EMAIL": "tess@example.com",
                 "HGRCPATH": "", "HGUSER": "Tess Ter <tess@example.com>", "HGPLAIN": "1"}.items():
        monkeypatch.setenv(k, v)


class Repo:
    def __init__(self, scm: str, path: Path):
        self.scm, self.path = scm, path
        path.mkdir(parents=True)
        if scm == "git":
            self.run("init", "-q", "-b", "main")
        else:
            self.run("init")

    def run(self, *args: str, env: dict | None = None) -> str:
        argv = ["git", "-C", str(self.path)] if self.scm == "git" else ["hg", "--cwd", str(self.path)]
        res = subprocess.run([*argv, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
        assert res.returncode == 0, f"{argv + list(args)}: {res.stderr}"
        return res.stdout.strip()

    def write(self, rel: str, text: str, executable: bool = False) -> None:
        f = self.path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        f.chmod(0o755 if executable else 0o644)

    def symlink(self, rel: str, target: str) -> None:
        f = self.path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.symlink_to(target)

    def commit(self, msg: str = "change", date: str = GIT_DATE) -> str:
        """date: git's form ('<epoch> +0000' or ISO 8601); hg gets the same instant."""
        if self.scm == "git":
            self.run("add", "-A")
            self.run("commit", "-q", "-m", msg, env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
            return self.run("rev-parse", "HEAD")
        out = self.run("commit", "-A", "--debug", "-m", msg, "-d", _hg_date(date))
        return re.search(r"^committed changeset \d+:([0-9a-f]{40})$", out, re.M).group(1)

    def project(self, sub: str = "", scm: str = "") -> Project:
        """scm given as the repository's (saves a detection round trip); scm='auto' to detect it."""
        return Project(name="blog", source=self.path / sub if sub else self.path, scm=scm or self.scm, build="none")


def _hg_date(date: str) -> str:
    if "T" in date:                           # 2001-02-03T04:05:06+05:00 -> 2001-02-03 04:05:06 +0500
        day, rest = date.split("T")
        return f"{day} {rest[:8]} {rest[8:].replace(':', '')}"
    epoch, tz = date.split()
    sign = -1 if tz[0] == "+" else 1          # hg's offset: seconds WEST of UTC
    return f"{epoch} {sign * (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60)}"


def app_repo(scm: str, path: Path) -> Repo:
    repo = Repo(scm, path)
    repo.write("manage.py", "print('manage')\n", executable=True)
    repo.write("blog/__init__.py", "")
    repo.write("blog/settings.py", "DEBUG = False\n")
    repo.write("static/css/site.css", "body {}\n")
    repo.symlink("blog/css", "../static/css")      # a link to a sibling directory: allowed
    return repo


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SCMS = ["git", "hg"]


# -- resolve_revision -----------------------------------------------------------------------------------
@pytest.mark.parametrize("scm", SCMS)
def test_resolve_head_branch_tag_and_unknown(tmp_path, scm):
    repo = app_repo(scm, tmp_path / "repo")
    first = repo.commit("first", "1700000000 +0000")
    if scm == "git":
        repo.run("tag", "-a", "v1", "-m", "release 1")       # annotated: must be peeled to the commit
        repo.run("checkout", "-q", "-b", "feature")
    else:
        repo.run("tag", "-d", "1700000100 0", "v1", "-r", first)
        repo.run("branch", "feature")
    repo.write("blog/feature.py", "x = 1\n")
    feature = repo.commit("feature", "1700000200 +0000")
    if scm == "git":
        repo.run("checkout", "-q", "main")
    else:
        repo.run("update", "-q", "default")
    repo.write("README", "head\n")
    head = repo.commit("head", "1700000300 +0000")
    assert len({first, feature, head}) == 3

    project = repo.project(scm="auto")
    assert resolve_revision(project, "") == Revision(scm, head, 1_700_000_300)
    assert resolve_revision(project, "v1") == Revision(scm, first, 1_700_000_000)
    assert resolve_revision(project, "feature") == Revision(scm, feature, 1_700_000_200)
    assert resolve_revision(project, feature[:10]).commit == feature
    assert resolve_revision(project, head).commit == head

    with pytest.raises(StepError) as info:
        resolve_revision(project, "no-such-rev")
    msg = str(info.value)
    assert "'no-such-rev' not found" in msg and str(repo.path) in msg and "DEPLOY_REVISION" in msg
    assert "\n" not in msg


def test_scm_detection_and_a_source_that_is_no_repository(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(StepError) as info:
        resolve_revision(Project(name="blog", source=plain, build="none"), "")
    assert "neither a git nor a Mercurial repository" in str(info.value) and "source" in str(info.value)
    with pytest.raises(StepError) as info:
        resolve_revision(Project(name="blog", source=tmp_path / "missing", build="none"), "")
    assert "is not a directory" in str(info.value)


def test_a_revision_is_never_taken_as_an_option(tmp_path):
    repo = app_repo("git", tmp_path / "repo")
    repo.commit()
    target = tmp_path / "written"
    with pytest.raises(StepError):
        resolve_revision(repo.project(), f"--output={target}")
    assert not list(tmp_path.glob("written*")), "git wrote a file named by the revision"


# -- make_archive: reproducible ---------------------------------------------------------------------------
@pytest.mark.parametrize("scm", SCMS)
def test_archive_is_byte_identical_across_mtimes_umask_and_clones(tmp_path, scm):
    repo = app_repo(scm, tmp_path / "repo")
    commit = repo.commit()
    project = repo.project()
    rev = resolve_revision(project, "")
    one = make_archive(project, rev, tmp_path / "build1")
    first = tmp_path / "build1" / f"{one.id}.tar.gz"
    assert one.sha256 == sha256(first) and one.revision == commit and one.wheels == ""

    # the working tree's mtimes and this process's umask must not matter
    later = time.time() + 86400
    for f in repo.path.rglob("*"):
        if ".git" not in f.parts and ".hg" not in f.parts:
            os.utime(f, (later, later), follow_symlinks=False)
    old = os.umask(0o077)
    try:
        two = make_archive(project, rev, tmp_path / "build2")
        # nor where the repository is, or how its clone was made
        clone = tmp_path / "elsewhere" / "clone"
        clone.parent.mkdir()
        subprocess.run([scm, "clone", "-q", str(repo.path), str(clone)], check=True)
        cloned = Project(name="blog", source=clone, build="none")
        three = make_archive(cloned, resolve_revision(cloned, commit), tmp_path / "build3")
    finally:
        os.umask(old)
    assert one == two == three
    assert first.read_bytes() == (tmp_path / "build2" / f"{one.id}.tar.gz").read_bytes() \
        == (tmp_path / "build3" / f"{one.id}.tar.gz").read_bytes()


@pytest.mark.parametrize("scm", SCMS)
def test_archive_content_owner_modes_and_times_are_normalised(tmp_path, scm):
    repo = app_repo(scm, tmp_path / "repo")
    repo.commit(date="1700000000 +0000")
    repo.write("blog/settings.py", "DEBUG = True  # not committed\n")      # the working tree is not shipped
    (repo.path / "untracked.txt").write_text("not committed\n")
    project = repo.project()
    release = make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    archive = tmp_path / "build" / f"{release.id}.tar.gz"
    got = members(archive)
    files = {n for n, m in got.items() if m.isreg()}
    assert files == {"manage.py", "blog/__init__.py", "blog/settings.py", "static/css/site.css"} | (
        {".hgtags"} if ".hgtags" in files else set())
    assert ".hg_archival.txt" not in got and "untracked.txt" not in got
    assert got["blog/css"].issym() and got["blog/css"].linkname == "../static/css"
    assert got["manage.py"].mode == 0o755 and got["blog/settings.py"].mode == 0o644
    assert all((m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 1_700_000_000) for m in got.values())
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.extractfile("blog/settings.py").read() == b"DEBUG = False\n"
    # the gzip header holds no time and no file name
    raw = archive.read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08
    # build/<id>.json: what local_release finds again (and refuses once the archive is damaged)
    assert local_release(tmp_path / "build", release.id) == release
    archive.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert local_release(tmp_path / "build", release.id) is None


@pytest.mark.parametrize("scm", SCMS)
def test_release_id_uses_the_commits_utc_time(tmp_path, scm, monkeypatch):
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        repo = app_repo(scm, tmp_path / "repo")
        commit = repo.commit(date="2001-02-03T04:05:06+05:00")       # = 2001-02-02 23:05:06 UTC
        project = repo.project()
        rev = resolve_revision(project, "")
        assert rev.time == 981155106
        release = make_archive(project, rev, tmp_path / "build")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert release.id == f"blog-2001-02-02-2305-{commit[:12]}"
    assert (tmp_path / "build" / f"{release.id}.tar.gz").is_file()
    assert (tmp_path / "build" / f"{release.id}.json").is_file()


# -- make_archive: refused ------------------------------------------------------------------------------
@pytest.mark.parametrize("scm", SCMS)
def test_a_symlink_escaping_the_tree_is_refused(tmp_path, scm):
    repo = app_repo(scm, tmp_path / "repo")
    repo.symlink("x", "../../etc/passwd")
    repo.commit()
    project = repo.project()
    rev = resolve_revision(project, "")
    with pytest.raises(StepError) as info:
        make_archive(project, rev, tmp_path / "build")
    msg = str(info.value)
    assert "refused" in msg and "'x'" in msg and "../../etc/passwd" in msg and "leaves the release" in msg
    assert not list((tmp_path / "build").glob("*.tar.gz")) and not list((tmp_path / "build").glob("*.json"))


@pytest.mark.parametrize("scm", SCMS)
def test_an_absolute_symlink_is_refused(tmp_path, scm):
    repo = app_repo(scm, tmp_path / "repo")
    repo.symlink("blog/passwd", "/etc/passwd")
    repo.commit()
    project = repo.project()
    with pytest.raises(StepError) as info:
        make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    assert "absolute path '/etc/passwd'" in str(info.value)


def test_a_symlink_escaping_through_another_symlink_is_refused(tmp_path):
    repo = app_repo("git", tmp_path / "repo")
    repo.symlink("d/b", "..")                                   # the release root itself: fine alone
    hops = 12
    repo.symlink("x", "d/b/" * hops + "../" * (2 * hops) + "etc/passwd")   # lexically inside, really /etc/passwd
    repo.commit()
    project = repo.project()
    try:
        release = make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    except StepError:
        return                                                  # refused: what this test asks for
    rel = tmp_path / "releases" / release.id
    rel.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(tmp_path / "build" / f"{release.id}.tar.gz"), "-C", str(rel)], check=True)
    real = os.path.realpath(rel / "x")
    assert real.startswith(str(rel.resolve()) + os.sep), f"x resolves to {real}, outside the release"


# -- sources that are a subdirectory of a repository --------------------------------------------------------
@pytest.mark.parametrize("scm", SCMS)
def test_a_subdirectory_source_archives_only_that_subdirectory(tmp_path, scm):
    repo = Repo(scm, tmp_path / "mono")
    repo.write("README", "the monorepo\n")
    repo.write("tools/deploy.sh", "echo\n", executable=True)
    repo.write("apps/blog/manage.py", "print()\n", executable=True)
    repo.write("apps/blog/blog/settings.py", "X = 1\n")
    repo.symlink("apps/blog/blog/readme", "../manage.py")
    commit = repo.commit()
    project = repo.project("apps/blog")
    rev = resolve_revision(project, "")
    assert rev.commit == commit
    release = make_archive(project, rev, tmp_path / "build")
    got = members(tmp_path / "build" / f"{release.id}.tar.gz")
    assert {n for n, m in got.items() if not m.isdir()} == {"manage.py", "blog/settings.py", "blog/readme"}
    assert got["blog/readme"].linkname == "../manage.py"
    assert got["manage.py"].mode == 0o755


def test_subdirectory_source_through_stages_ini(tmp_path):
    """Relative source = in stages.ini, resolved against the ini, then archived (as the demo does)."""
    repo = Repo("git", tmp_path / "mono")
    repo.write("apps/blog/manage.py", "print()\n")
    repo.write("other.txt", "no\n")
    repo.commit()
    ini = tmp_path / "mono" / "deploy" / "stages.ini"
    ini.parent.mkdir()
    ini.write_text(stages_ini(CODE_ONLY, THIS_MACHINE, {"project": {"source": "../apps/blog"}}))
    config = load_config(ini, environ={})
    release = make_archive(config.project, resolve_revision(config.project, ""), config.build_dir)
    assert (tmp_path / "mono" / "deploy" / "build" / f"{release.id}.tar.gz").is_file()
    assert set(members(config.build_dir / f"{release.id}.tar.gz")) == {"manage.py"}


def test_hg_archive_has_no_archival_metadata(tmp_path):
    repo = app_repo("hg", tmp_path / "repo")
    repo.commit()
    repo.run("tag", "-d", "1700000000 0", "v1")             # .hgtags is then part of the tree; nothing else added
    project = repo.project()
    release = make_archive(project, resolve_revision(project, "v1"), tmp_path / "build")
    names = set(members(tmp_path / "build" / f"{release.id}.tar.gz"))
    assert ".hg_archival.txt" not in names and not any(n.startswith(".hg/") for n in names)
    assert "manage.py" in names


# -- the tool's own names, submodules, uncommitted changes ---------------------------------------------------
@pytest.mark.parametrize("name", [".deploy-ready", ".deploy-release.json", ".deploy-env/prod.env", "REVISION",
                                  ".venv/bin/python"])
def test_an_archive_holding_a_name_the_tool_writes_is_refused(tmp_path, name):
    """A shipped .deploy-ready made a half-unpacked release look ready (issue 16)."""
    repo = app_repo("git", tmp_path / "repo")
    repo.write(name, "x\n")
    repo.commit()
    project = repo.project()
    with pytest.raises(StepError) as info:
        make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    top = name.split("/")[0]
    assert f"refused: {top!r} is a name the deploy tool writes into every release" in str(info.value)
    assert "rename or remove it in the repository" in str(info.value) and "\n" not in str(info.value)
    assert not list((tmp_path / "build").glob("*.tar.gz"))
    repo.write("docs/REVISION", "x\n")        # the same name deeper down is the app's own
    repo.run("rm", "-q", "-r", top)
    repo.commit("moved")
    release = make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    assert "docs/REVISION" in members(tmp_path / "build" / f"{release.id}.tar.gz")


def submodule_repo(tmp_path: Path) -> tuple[Repo, Repo, str]:
    lib = Repo("git", tmp_path / "lib")
    lib.write("lib.py", "VERSION = 1\n")
    first = lib.commit("lib 1")
    lib.write("lib.py", "VERSION = 2\n")
    lib.commit("lib 2")
    app = app_repo("git", tmp_path / "app")
    app.run("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.path), "vendor/lib")
    app.run("-C", "vendor/lib", "checkout", "-q", first)
    app.commit("with a submodule at lib 1")
    return app, lib, first


def test_a_submodule_ships_its_recorded_commit_and_reproducibly(tmp_path):
    app, lib, first = submodule_repo(tmp_path)
    project = app.project()
    release = make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    archive = tmp_path / "build" / f"{release.id}.tar.gz"
    got = members(archive)
    assert "vendor/lib/lib.py" in got and "manage.py" in got
    with tarfile.open(archive) as tar:
        assert tar.extractfile("vendor/lib/lib.py").read() == b"VERSION = 1\n"   # the commit recorded, not lib's head
    app.run("-C", "vendor/lib", "checkout", "-q", "main")     # the working tree moved on: not what ships
    again = make_archive(project, resolve_revision(project, ""), tmp_path / "build2")
    assert sha256(tmp_path / "build2" / f"{again.id}.tar.gz") == sha256(archive)


def test_a_submodule_not_checked_out_is_one_line_saying_what_to_do(tmp_path):
    app, lib, first = submodule_repo(tmp_path)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(app.path), str(clone)], check=True)   # without --recursive
    project = Project(name="blog", source=clone, scm="git", build="none")
    with pytest.raises(StepError) as info:
        make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    msg = str(info.value)
    assert f"submodule vendor/lib (commit {first[:12]}) is not checked out in {clone}" in msg
    assert "git submodule update --init --recursive" in msg and "\n" not in msg


@pytest.mark.parametrize("scm", SCMS)
def test_uncommitted_changes_are_named_and_what_ships_is_the_commit(tmp_path, scm):
    from doit_stages.steps.source import dirty_note
    repo = app_repo(scm, tmp_path / "repo")
    commit = repo.commit()
    project = repo.project()
    assert dirty_note(project, resolve_revision(project, "")) is None
    repo.write("blog/settings.py", "DEBUG = True\n")
    repo.write("notes.txt", "todo\n")
    note = dirty_note(project, resolve_revision(project, ""))
    assert note.startswith(f"note: {repo.path} has uncommitted changes, which do not ship (what ships is commit "
                           f"{commit[:12]}")
    assert "blog/settings.py" in note and "notes.txt" in note and "\n" not in note
    release = make_archive(project, resolve_revision(project, ""), tmp_path / "build")
    with tarfile.open(tmp_path / "build" / f"{release.id}.tar.gz") as tar:
        assert tar.extractfile("blog/settings.py").read() == b"DEBUG = False\n"
