"""build = buildout, the pure part: buildout configs read as zc.buildout reads them (sections, indented
continuations, the `extends` chain inside the release), their [versions] pins, and the `pip wheel` calls
that put exactly those pins into the wheelhouse. No I/O: a config is read through a callable."""
from __future__ import annotations

import posixpath
import re
from typing import Callable, Iterable

from ..errors import StepError

SECTION_RE = re.compile(r"\[\s*(?P<name>[^\s#[\]:;{}]+)\s*(:(?P<expr>[^#;]*))?\s*\]\s*([#;].*)?$")
OPTION_RE = re.compile(r"(?P<name>[^\s{}[\]=:]+\s*[-+]?)=(?P<value>.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- reading configs (pure) --------------------------------------------------------------------------
def parse_cfg(text: str, path: str) -> dict[str, dict[str, str]]:
    """A buildout config as zc.buildout's own parser reads it: comments start a line with # or ;, values
    continue on indented lines. A conditional section [name:expr] is kept as 'name:expr' (not evaluated)."""
    sections: dict[str, dict[str, str]] = {}
    cur, opt = None, None
    for no, line in enumerate(text.splitlines(), 1):
        if not line or line[0] in "#;":
            continue
        if line[0].isspace():
            if cur is not None and opt and line.strip():
                cur[opt] = f"{cur[opt]}\n{line.strip()}".strip()
            continue
        header = SECTION_RE.match(line)
        if header:
            expr = (header.group("expr") or "").strip()
            cur, opt = sections.setdefault(header.group("name") + (f":{expr}" if expr else ""), {}), None
            continue
        option = OPTION_RE.match(line)
        if cur is None or not option:
            raise StepError(f"archive: {path}:{no}: buildout cannot read this line: {line.strip()[:60]!r}")
        opt = option.group("name").rstrip()
        cur[opt] = option.group("value").strip()
    return sections


def load_cfg(read: Callable[[str], str | None], path: str, seen: tuple[str, ...] = ()) -> dict:
    """The config at `path` in the release with its extends chain merged in (later files win, as in
    buildout). `read` gives a file's text from the release, or None."""
    if path in seen:
        raise StepError(f"archive: {path} extends itself (through {' -> '.join(seen)}); break the cycle")
    text = read(path)
    if text is None:
        raise StepError(f"archive: {path} is not in the release; commit it or fix buildout_config / extends")
    data = parse_cfg(text, path)
    merged: dict[str, dict[str, str]] = {}
    own = data.get("buildout", {})
    for key in ("extends", "optional-extends"):
        for ref in own.pop(key, "").split():
            if "://" in ref or ref.startswith(("/", "~")):
                raise StepError(f"archive: {path} extends {ref}, which is outside the release (the hosts have "
                                "no network); copy it into the repository and extend it by a relative path")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), ref))
            if target.startswith("../"):
                raise StepError(f"archive: {path} extends {ref}, which is outside the release; move it inside")
            if key == "optional-extends" and read(target) is None:
                continue
            merged = _merge(merged, load_cfg(read, target, (*seen, path)))
    return _merge(merged, data)


def _merge(base: dict, over: dict) -> dict:
    out = {name: dict(options) for name, options in base.items()}
    for name, options in over.items():
        out.setdefault(name, {}).update(options)
    return out


def versions_of(read: Callable[[str], str | None], path: str) -> dict[str, str]:
    """name -> version from the config's versions section ([buildout] versions = ..., default [versions])."""
    cfg = load_cfg(read, path)
    section = cfg.get("buildout", {}).get("versions", "versions")
    if any(name.startswith(section + ":") for name in cfg):
        raise StepError(f"archive: {path}: a conditional [{section}:...] section is not supported; "
                        f"pin every version in plain [{section}]")
    pins = cfg.get(section, {})
    for name, version in pins.items():
        if name[-1] in "+-" or "${" in version or not re.fullmatch(r"[A-Za-z0-9.!+_-]+", version):
            raise StepError(f"archive: {path}: [{section}] {name} = {version!r} is not a plain pin; "
                            "write name = version")
    return pins


def wheel_batches(pins: Iterable[tuple[str, str]]) -> list[list[str]]:
    """name==version arguments for `pip wheel`, in as few calls as possible (pip refuses one name twice in
    a call, and two stages may pin two versions)."""
    unique: dict[tuple[str, str], str] = {}
    for name, version in sorted(set(pins)):
        unique.setdefault((canonical(name), version), name)
    batches: list[dict[str, str]] = []
    for (_, version), name in sorted(unique.items()):
        batch = next((b for b in batches if canonical(name) not in b), None)
        if batch is None:
            batches.append(batch := {})
        batch[canonical(name)] = f"{name}=={version}"
    return [sorted(b.values()) for b in batches]


def buildout_version(per_config: dict[str, dict[str, str]]) -> str:
    """The one zc.buildout the release's venv gets: pinned, and the same in every config."""
    versions = {v for pins in per_config.values() for n, v in pins.items() if canonical(n) == "zc-buildout"}
    if not versions:
        raise StepError(f"archive: [versions] of {', '.join(per_config)} does not pin zc.buildout; add e.g. "
                        "zc.buildout = 6.0.1 (every host installs exactly that one from the wheelhouse)")
    if len(versions) > 1:
        raise StepError(f"archive: the stages' buildout configs pin different zc.buildout versions "
                        f"({', '.join(sorted(versions))}); pin one")
    return versions.pop()


# -- eggs nobody pinned (found here, at archive time, all at once) ---------------------------------------
def egg_roots(cfg: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """(requirement, where) of what the config's parts ask buildout to install: buildout's extensions, each
    part's recipe and its `eggs` (one a line; a ${...} substitution is left to buildout)."""
    own = cfg.get("buildout", {})
    roots = [(ext, "[buildout] extensions") for ext in own.get("extensions", "").split()]
    for part in own.get("parts", "").split():
        options = cfg.get(part, {})
        recipe = options.get("recipe", "").split(":")[0].strip()
        if recipe and "${" not in recipe:
            roots.append((recipe, f"the recipe of [{part}]"))
        for line in options.get("eggs", "").splitlines():
            line = line.split("#")[0].strip()
            if line and "${" not in line:
                roots.append((line, f"[{part}] eggs"))
    return roots


def develop_names(cfg: dict[str, dict[str, str]], read: Callable[[str], str | None]) -> set[str]:
    """The project names of the config's develop eggs (from pyproject.toml, setup.cfg or setup.py in each
    `develop` directory), as far as they can be read without running them."""
    names = set()
    for where in cfg.get("buildout", {}).get("develop", "").split():
        base = posixpath.normpath(where)
        for path, pattern in (("pyproject.toml", r"(?ms)^\[project\].*?^name\s*=\s*['\"]([^'\"]+)"),
                              ("setup.cfg", r"(?ms)^\[metadata\].*?^name\s*=\s*(\S+)"),
                              ("setup.py", r"\bname\s*=\s*['\"]([^'\"]+)")):
            text = read(posixpath.join(base, path) if base != "." else path)
            found = re.search(pattern, text or "")
            if found:
                names.add(canonical(found.group(1)))
                break
    return names


def unpinned_eggs(roots: list[tuple[str, str]], pins: dict[str, str], deps_of: Callable[[str], list[str]],
                  env: dict[str, str], skip: set[str] = frozenset()) -> dict[str, str]:
    """{name: what asks for it} of every distribution the roots need, transitively, that [versions] does not
    pin. deps_of(canonical name) gives a pinned distribution's Requires-Dist lines; markers are evaluated
    for the hosts' interpreter (env), with the extras asked for."""
    from packaging.requirements import InvalidRequirement, Requirement
    pinned = {canonical(n) for n in pins}
    missing: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = list(roots)
    while todo:
        text, by = todo.pop(0)
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue   # buildout reports what it cannot read itself
        name = canonical(req.name)
        if name in skip or (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        if name not in pinned:
            missing.setdefault(req.name, by)
            continue
        for dep in deps_of(name):
            try:
                d = Requirement(dep)
            except InvalidRequirement:
                continue
            if d.marker and not any(d.marker.evaluate({**env, "extra": e}) for e in (*req.extras, "")):
                continue
            todo.append((str(d).split(";")[0].strip(), req.name))
    return missing
