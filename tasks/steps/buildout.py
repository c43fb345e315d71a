"""build = buildout: the release's buildout config run on every host, offline, from a wheelhouse built once here.

On the deploying machine (archive): every config a stage runs is read from the archive, with its `extends`
chain; the distributions pinned in its [versions] section are `pip wheel --no-deps`ed, with zc.buildout's
own dependencies, into one wheelhouse (shipped like build = pip's, to .deploy/wheels/<digest>/).
On each host: the release gets a venv with zc.buildout from that wheelhouse (release level); then each
stage runs buildout with its own config into releases/<id>/.buildout/<stage>/ (bin/, parts/, develop-eggs/,
.installed.cfg; eggs are shared by the stages in releases/<id>/.buildout/eggs/), with index and find-links
pointing at the wheelhouse, newest = false and allow-picked-versions = false. releases/<id>/bin/<script>
runs the script of the stage named by $STAGE (the stage's env file sets it), so `bin/django migrate` works
in the release directory for every stage.
"""
from __future__ import annotations

import hashlib
import io
import posixpath
import re
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable

from .. import localcmd
from ..config import Config, Stage
from ..errors import StepError
from ..hostside import script
from ..layout import BUILDOUT_DIR, Layout
from ..runtime.common import pack_wheelhouse
from ..transport import Transport
from .buildout_pins import (
    buildout_version,
    canonical,
    develop_names,
    egg_roots,
    load_cfg,
    unpinned_eggs,
    versions_of,
    wheel_batches,
)
from .environment import app_command
from .facts import interpreter_key

# In releases/<id>/bin/: the same few lines for every script buildout made for some stage.
DISPATCHER = script("buildout_dispatcher.sh")
# $1 release dir, $2 stage, $3 the dispatcher's text
WRITE_DISPATCHERS = script("buildout_dispatchers.sh")


# -- the wheelhouse, once, on the deploying machine --------------------------------------------------
def archive_reader(archive: Path) -> Callable[[str], str | None]:
    def read(path: str) -> str | None:
        with tarfile.open(archive, "r:gz") as tar:
            try:
                member = tar.extractfile(path)
            except KeyError:
                return None
            return member.read().decode() if member else None
    return read


def build_wheelhouse(archive: Path, build_dir: Path, configs: Iterable[str],
                     path_of: Callable[[Path, str], Path], python: dict[str, str]) -> str:
    """The wheels of every pin of every config (and zc.buildout's dependencies), for the hosts' interpreter
    (python), tarred; returns its digest. Then every egg the configs need that no pin covers is refused, all
    in one line (the hosts' buildout picks nothing)."""
    read = archive_reader(archive)
    per_config = {cfg: versions_of(read, cfg) for cfg in dict.fromkeys(configs)}
    zc = buildout_version(per_config)
    batches = wheel_batches((n, v) for pins in per_config.values() for n, v in pins.items())
    parts = [interpreter_key(python), "buildout", *sum(batches, [])]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    target = path_of(build_dir, digest)
    if not target.is_file():
        _build(target, build_dir, batches, zc)
    check_pinned(read, per_config, target, python)
    return digest


def check_pinned(read: Callable[[str], str | None], per_config: dict[str, dict[str, str]], wheelhouse: Path,
                 python: dict[str, str]) -> None:
    deps = requires_of(wheelhouse)
    missing: dict[str, tuple[str, str]] = {}
    for cfg, pins in per_config.items():
        loaded = load_cfg(read, cfg)
        found = unpinned_eggs(egg_roots(loaded), pins, lambda name: deps.get(name, []), python,
                              develop_names(loaded, read))
        for name, by in found.items():
            missing.setdefault(name, (cfg, by))
    if missing:
        said = ", ".join(f"{name} ({by} in {cfg})"
                         for name, (cfg, by) in sorted(missing.items(), key=lambda x: x[0].lower()))
        raise StepError(f"archive: not pinned in [versions]: {said}; add name = version for each (the hosts' "
                        "buildout picks no version: it installs only what [versions] pins, from the wheelhouse)")


def requires_of(wheelhouse: Path) -> dict[str, list[str]]:
    """{canonical name: its Requires-Dist lines} of every wheel in the wheelhouse tar."""
    deps: dict[str, list[str]] = {}
    with tarfile.open(wheelhouse) as tar:
        for m in tar:
            if not m.name.endswith(".whl"):
                continue
            with zipfile.ZipFile(io.BytesIO(tar.extractfile(m).read())) as whl:
                meta = next((n for n in whl.namelist() if n.endswith(".dist-info/METADATA")), None)
                if meta is None:
                    continue
                text = whl.read(meta).decode(errors="replace").split("\n\n")[0]
            name = canonical(m.name.split("-")[0])
            deps[name] = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Requires-Dist:")]
    return deps


def _build(target: Path, build_dir: Path, batches: list[list[str]], zc: str) -> None:
    with tempfile.TemporaryDirectory(dir=build_dir) as tmp:
        wheels, constraints = Path(tmp) / "wheels", Path(tmp) / "constraints.txt"
        for batch in batches:
            _pip("wheel", "--no-deps", "--ignore-requires-python", "-w", str(wheels), *batch)
        # zc.buildout's own dependencies (setuptools, pip, wheel, ...), held to the pins where pinned
        constraints.write_text("".join(line + "\n" for line in batches[0]))
        _pip("wheel", "-w", str(wheels), "--find-links", str(wheels), "-c", str(constraints), f"zc.buildout=={zc}")
        (Path(tmp) / "requirements.txt").write_text(f"zc.buildout=={zc}\n")
        pack_wheelhouse(Path(tmp) / "requirements.txt", wheels, target)


def _pip(*args: str) -> None:
    localcmd.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                 f"archive: pip {args[0]} for the buildout wheelhouse failed")


# -- on a host, per stage -------------------------------------------------------------------------------
def stage_part(layout: Layout, rid: str, stage: str) -> str:
    return posixpath.join(layout.release(rid), BUILDOUT_DIR, stage)


def buildout_argv(layout: Layout, rid: str, stage: str, config_file: str, wheels: str) -> list[str]:
    """The buildout run of one stage: the stage's config, everything from the wheelhouse, nothing picked."""
    rel, own = layout.release(rid), stage_part(layout, rid, stage)
    # buildout 6 installs each wheel with `pip install`, which would also ask PyPI (its self version check,
    # build dependencies): that pip gets the wheelhouse as its only source, and no index
    pip_env = ["PIP_NO_INDEX=1", f"PIP_FIND_LINKS={wheels}", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
    return ["env", *pip_env, posixpath.join(rel, ".venv", "bin", "buildout"), "-U",
            "-c", posixpath.join(rel, config_file),
            f"buildout:index={wheels}", f"buildout:find-links={wheels}", "buildout:newest=false",
            "buildout:allow-picked-versions=false", "buildout:offline=false",
            f"buildout:eggs-directory={posixpath.join(rel, BUILDOUT_DIR, 'eggs')}",
            f"buildout:bin-directory={own}/bin", f"buildout:parts-directory={own}/parts",
            f"buildout:develop-eggs-directory={own}/develop-eggs", f"buildout:installed={own}/.installed.cfg"]


def failure_line(out: str, err: str, config_file: str) -> str:
    """buildout's own error line, said in the deployer's words when a distribution is missing."""
    lines = [ln.strip() for ln in f"{err}\n{out}".splitlines() if ln.strip()]
    errors = [ln[len("Error:"):].strip() for ln in lines if ln.startswith("Error:")]
    line = errors[-1] if errors else (lines[-1] if lines else "?")
    missing = re.search(r"Couldn't find a distribution for '([^']+)'", line)
    if missing:
        name = re.split(r"[\s<>=!~;\[]", missing.group(1))[0]
        return (f"{name} is not in the wheelhouse (buildout: {line}); pin it in [versions] of {config_file} "
                "and run again (the wheelhouse holds what [versions] pins)")
    picked = re.match(r"Picked: (\S+) = (\S+)", line)
    if picked:
        name, version = picked.groups()
        return f"{name} is not pinned in [versions] of {config_file}; add {name} = {version}"
    return line


def run_buildout(t: Transport, layout: Layout, config: Config, stage: Stage, rid: str, wheels: str) -> None:
    """The stage's buildout, with the release's environment for the stage, then the bin/ dispatchers."""
    if not wheels:
        raise StepError(f"release {rid} was archived without a buildout wheelhouse (build was not buildout "
                        "then); deploy a new archive (doit archive, with build = buildout)")
    t.run(["mkdir", "-p", stage_part(layout, rid, stage.name)])
    argv = buildout_argv(layout, rid, stage.name, stage.buildout_config, wheels)
    code, out, err = t.call(app_command(layout, stage.name, rid, argv))
    if code != 0:
        raise StepError(f"buildout -c {stage.buildout_config} failed (exit {code}): "
                        f"{failure_line(out, err, stage.buildout_config)}")
    t.run(["sh", "-c", WRITE_DISPATCHERS, "sh", layout.release(rid), stage.name, DISPATCHER.rstrip("\n")])


def configs_of(config: Config) -> tuple[str, ...]:
    """Every buildout config a stage of this project runs: the wheelhouse must serve them all."""
    return tuple(dict.fromkeys([config.project.buildout_config, *(s.buildout_config for s in config.stages.values())]))
