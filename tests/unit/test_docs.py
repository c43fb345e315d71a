"""The documentation: docs/configuration.md is what scripts/config_docs.py writes from the key tables (so it
cannot drift from the code), every key is in it, the README stays a short page that links every doc, each
doc opens with one line of what it covers, every relative link resolves and every file a page names exists,
and no tracked file refers to a path outside the repository. Reads files only (git's index too)."""
from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path

import pytest

from doit_stages.config import DATABASE_KEYS, PROJECT_KEYS, STAGE_KEYS

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())   # tests/ or below
DOCS = ROOT / "docs"
# a path outside the repository: design notes beside the checkout (../shared/<x>.md), this machine's
# checkouts; `../../shared/media` (a release's link to its host's shared/, in a test) is a host path.
# This file spells the patterns, so it is not searched.
OUTSIDE = re.compile(r"(?<![\w./])\.\./shared/|\bshared/(?:DESIGN|NOTES|STYLE)\.md|/work/|\bDESIGN\.md\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PAGES = ["README.md", "bench/README.md", *sorted(p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md"))]


def generator():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "scripts" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_md_is_what_the_generator_writes():
    written = (DOCS / "configuration.md").read_text()
    assert written == generator().render(), (
        "docs/configuration.md differs from the key tables of the code; run ./scripts/gen-config-docs")


def test_every_key_is_in_configuration_md_under_its_section():
    text = generator().render()
    sections = dict(zip(["head", "project", "stage", "database"],
                        re.split(r"^## `\[(?:project|stage:<name>|database:<name>)\]`$", text, flags=re.M)))
    for section, keys in (("project", PROJECT_KEYS), ("stage", STAGE_KEYS), ("database", DATABASE_KEYS)):
        missing = sorted(k for k in keys if f"| `{k}` |" not in sections[section])
        assert not missing, f"[{section}] keys missing from docs/configuration.md: {missing}"


def tracked_files() -> list[Path]:
    """The files git tracks, read from its index without starting git."""
    git = ROOT / ".git"
    if git.is_file():   # a worktree: "gitdir: <its directory>"
        git = Path(git.read_text().split(":", 1)[1].strip())
    return [ROOT / name for name in index_paths((git / "index").read_bytes())]


def index_paths(data: bytes) -> list[str]:
    """The paths of a git index (format versions 2 to 4: gitformat-index(5))."""
    assert data[:4] == b"DIRC", "not a git index"
    version, count = struct.unpack(">II", data[4:12])
    pos, name, names = 12, b"", []
    for _ in range(count):
        flags = struct.unpack(">H", data[pos + 60:pos + 62])[0]
        start = pos + 62 + (2 if version >= 3 and flags & 0x4000 else 0)
        if version == 4:    # the bytes to drop from the previous path (a varint), then the rest, unpadded
            c, start = data[start], start + 1
            drop = c & 0x7F
            while c & 0x80:
                c, start = data[start], start + 1
                drop = ((drop + 1) << 7) | (c & 0x7F)
            end = data.index(b"\0", start)
            name = name[:len(name) - drop] + data[start:end]
            pos = end + 1
        else:
            end = data.index(b"\0", start)
            name = data[start:end]
            pos += (end - pos + 8) // 8 * 8
        names.append(name.decode())
    return names


def test_no_tracked_file_refers_to_a_path_outside_the_repository():
    found = []
    for path in tracked_files():
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):   # binary, or deleted in the work tree
            continue
        for no, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()[:100]}")
    assert not found, "refers outside the repository (point it at docs/ instead):\n" + "\n".join(found)


def test_the_readme_is_short_starts_with_the_two_commands_and_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move the detail to docs/"
    assert (lines[2], lines[5]) == ("```sh", "```") and lines[3].startswith("./scripts/demo ") \
        and lines[4].startswith("./scripts/test "), "README.md must open with ./scripts/demo and ./scripts/test"
    linked = {target.split("#")[0] for target in LINK.findall(readme)}
    unlinked = sorted(p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md")
                      if p.relative_to(ROOT).as_posix() not in linked)
    assert not unlinked, f"README.md does not say where to find {unlinked}"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_every_doc_starts_with_one_line_of_what_it_covers(page):
    lines = (DOCS / page).read_text().splitlines()
    title, blank, summary, after = (lines + ["", "", "", ""])[:4]
    assert title.startswith("# ") and not blank and summary.strip() and not after, (
        f"docs/{page} must start with its title, then one line of what it covers")


REPO_PATH = re.compile(r"`((?:tasks|tests|bench|scripts|examples|infra-tests|docs)/[^`\s<]*)`")
TEST_FILE = re.compile(r"`(test_\w+\.py)")
CODE_BLOCK = re.compile(r"^```\n(.*?)^```", flags=re.M | re.S)


@pytest.mark.parametrize("page", PAGES)
def test_every_file_a_page_names_exists(page):
    """`tasks/steps/switch.py`, `test_transport.py`, and the modules in a code block's file tree: a file
    moved or renamed fails here until the page follows it."""
    text = (ROOT / page).read_text()
    missing = [p for p in REPO_PATH.findall(text) if not list(ROOT.glob(p.split("::")[0].rstrip(".,;:")))]
    if page in ("docs/testing.md", "docs/crash-safety.md"):     # the pages that cite the suite's files
        missing += [n for n in TEST_FILE.findall(text) if not list((ROOT / "tests").rglob(n))]
    for block in CODE_BLOCK.findall(text):
        missing += [m for m in re.findall(r"^\s*(?:tasks/)?([\w/]+\.py)\b", block, flags=re.M)
                    if not (ROOT / m).exists() and not list((ROOT / "tasks").rglob(m))]
    assert not missing, f"{page} names files that are not in the repository: {missing}"


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    source = ROOT / page
    broken = []
    for target in LINK.findall(source.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (source.parent / file).resolve() if file else source
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{page}: broken links {broken}"
