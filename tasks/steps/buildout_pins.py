"""build = buildout, the pure part: buildout configs read as zc.buildout reads them (sections, indented
continuations, the `extends` chain inside the release), their [versions] pins, and the `pip wheel` calls
that put exactly those pins into the wheelhouse. No I/O: a config is read through a callable."""
from __future__ import annotations

import posixpath
import re
from typing import Callable, Iterable

from .common import StepError

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
