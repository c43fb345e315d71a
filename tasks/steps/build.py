"""build: releases/<id> unpacked, linked to shared/, built, then marked ready; then the stage's own build.

Two levels, because one release directory serves every stage on a host:
- release level (once per host): unpack, REVISION, shared links, venv from the wheelhouse (build = pip:
  the app's requirements.txt; build = buildout: zc.buildout), then the READY marker, written last. A
  directory without it is half-built and is removed by the next run.
- stage level: the release's env for the stage (a new version in releases/<id>/.deploy-env/ when it
  changed, 0600, never rewritten; shared/<stage>.env a symlink to the live one: steps/environment.py), the
  release's own generation of the stage's stage_dirs (shared/<stage>/<id>/, its STAGE_DIR: the live
  release's stays as it is until the switch), (build = buildout) the stage's buildout run
  (steps/buildout.py), build_command with that environment, then the record of the env version and build
  settings, and .deploy/built-<stage> holding the release id. A build changes no env file that a release
  runs with; the release live on the stage gets no more than a new env version (its switch makes it live),
  and is refused when the build settings changed (running them in it would change the live release in
  place).
"""
from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from dataclasses import dataclass

from .. import failpoints
from ..config import Config, Stage
from ..errors import StepError
from ..hostside import script
from ..layout import RELEASE_GLOB, TOOL_NAMES, Layout
from ..runtime.common import last_line
from ..runtime.known_links import KnownLinks
from ..transport import INLINE_MAX, Cmd, CommandFailed, Transport
from . import buildout as buildout_step
from .archive import Release
from .environment import TEXT_MAX, WRITE_ENV, app_command, env_file, env_token, write_env_args
from .facts import KEY_CODE

# $1 release dir, $2 archive, $3 revision, $4 wheels dir or ""; $5 release json; $6 venv dir or "", $7 the
# venv relative to the release dir (the target of its .venv link), $8 the release's ready marker, $9 the file
# of its release json, ${10} the venv's complete marker, ${11} the release's env dir for the stage's env
# file, then the directories the stage's build and switch make when missing (its shared dirs, its link's
# directory). ONE mkdir makes them all: the env dir 0700 (-m) with the release dir on its way, the others
# through "<dir>/.." (made on the way, with the login's umask, as `mkdir -p <dir>` made them); tar keeps
# the env dir as made (--no-overwrite-dir: the archive has no entry for the release dir itself), and then
# says so ("env_dir 700"), so the stage's build runs no chmod on it.
# The venv is shared by every release with the same wheelhouse digest: built once per host, in place at
# its final path (a venv is not relocatable: its scripts name their python by absolute path), marked
# complete last; one without the marker (a build that died) is built again from scratch. The host's
# deploy lock (.deploy/lock, held by the run) keeps two builds from meeting. A complete venv is never
# changed again; a new requirement is a new digest, so a new venv. ${12}: the interpreter the wheelhouse
# was resolved for (facts.interpreter_key), ${13} the code that prints the host's (facts.KEY_CODE): a new
# venv is made only by that python3 ("python <key>" on stderr and exit 4 otherwise). The archive's own copies of
# the tool's names (the ready marker above all) are never extracted (TOOL_NAMES), and the marker is
# written only after tar said the whole archive is unpacked (a truncated gzip fails its CRC).
UNPACK = script("build_unpack.sh").replace("@EXCLUDES@", " ".join(shlex.quote(f"--exclude={n}") for n in TOOL_NAMES))

# The stage-level build after the unpack, in ONE command (shell builtins where they serve: a program runs
# only for what changes). $1 release dir, $2 the stage's link, $3 its target when this release is live, $4
# the digest of the stage's build settings (build_inputs), $5 "1" when buildout or build_command follow,
# $6 the release's env record for the stage; then the number of shared links and that many quadruples:
# kind (d|f), path in the release, relative link target, absolute shared path (run at every build of a
# stage, so a shared file added to the config later is linked too); then WRITE_ENV's nine arguments (the
# env file on stdin); then "1" to build the release's generation of the stage dirs afresh (removed first),
# the stage's built marker, the release id, that generation (shared/<stage>/<id>: STAGE_DIR), shared/<stage>,
# then the stage dirs' names. The generation of the release live on the stage is never emptied (a new env
# version of it names the same one). Only when the live release has none (a host from before generations,
# whose live env has STAGE_DIR=shared/<stage>) is it made, as a copy of what shared/<stage>/ holds besides
# generations (through <gen>.tmp, removed first: a killed copy is made again), so the switch to that env
# version serves the same files.
# The release live on the stage is never built again in place: with other build settings than it was built
# with it is refused (exit 4, before anything is written), else only a new env version is made if the
# environment changed (no stage dir emptied, no buildout or build_command: the switch makes that env live),
# recorded as done. Otherwise the record names the version with "-" while buildout or build_command still
# run (FINISH writes it done, then the marker).
STAGE_FILES = script("build_stage_files.sh").replace("@WRITE_ENV@\n", WRITE_ENV).replace("@RID@", RELEASE_GLOB)

# After buildout and build_command: $1 the env record, $2 the version and the build settings' digest, $3
# the built marker, $4 the release id. The record says done, then the marker: the build's last effect.
FINISH = ('(umask 077; printf "%s\\n" "$2" > "$1.tmp") && mv -f -- "$1.tmp" "$1" && '
          '{ [ -d "${3%/*}" ] || (umask 077; mkdir -p -- "${3%/*}"); } && '
          '(umask 133; printf "%s\\n" "$4" > "$3.tmp") && mv -f -- "$3.tmp" "$3"')

# $1 release dir, $2 its ready marker, $3 built marker, $4 the release's env dir, $5 the stage, $6
# shared/<stage>.env, $7 the stage's link, $8 the size of the env file it should be (then that file is on
# stdin: a short text without NUL) or "", then the shared paths in the release: one command for everything
# is_built looks at, one "key value" a line ("missing <path>" for each shared path not linked to something).
# The env file looked at is the version the release's record for the stage names ("record <token> <build
# settings' digest>"); "env_live 1" when <stage>.env is that version, 0 when it is another, - when the
# release has none. One program runs when the env file and the links are there and the env file is what it
# should be: ONE stat for the env file's mode and size and the targets of shared/<stage>.env and of the
# stage's link (%N, literal: "<path> -> <target>"; the stage's link is read for the switch's check, which
# follows); the env file of the right size is compared with stdin by the shell's read ("env_same 1": the
# same bytes, since read drops only NULs and the sizes agree), else sha256sum says its digest. An answer not
# of that form asks as before (and says nothing of the stage's link).
STAGE_STATE = script("build_stage_state.sh")


# $@: the shared files' paths on the host; prints each one that is not there (a dangling link is not there)
MISSING_FILES = 'for f; do [ -e "$f" ] || printf "%s\\n" "$f"; done'


def missing_shared_files(t: Transport, layout: Layout, config: Config) -> list[str]:
    """The shared_files entries that shared/ on the host lacks (the build would stop at the first): asked
    before the upload and the build write anything, so a missing one changes nothing."""
    paths = {layout.join("shared", name): name for name in config.project.shared_files}
    if not paths:
        return []
    out = t.run(["sh", "-c", MISSING_FILES, "sh", *paths])
    return [paths[p] for p in out.splitlines() if p in paths]


def shared_files_problem(what: str, layout: Layout, missing: dict[str, list[str]]) -> str | None:
    """One line for the shared files missing on each host ({host: [names]}), or None."""
    hosts: dict[str, list[str]] = {}
    for host, names in missing.items():
        for name in names:
            hosts.setdefault(name, []).append(host)
    if not hosts:
        return None
    gaps = "; ".join(f"{layout.join('shared', name)} is missing on {', '.join(where)}" for name, where in hosts.items())
    return (f"{what}: shared file {gaps}: create it there (shared_files in stages.ini lists it), then run "
            f"again; nothing was changed")


def shared_links(layout: Layout, config: Config, rel: str) -> list[str]:
    args = []
    for kind, names in (("d", config.project.shared_dirs), ("f", config.project.shared_files)):
        for name in names:
            shared = layout.join("shared", name)
            args += [kind, name, posixpath.relpath(shared, posixpath.dirname(posixpath.join(rel, name))), shared]
    return args


def build_inputs(config: Config, stage: Stage, host=None) -> str:
    """A digest of the settings the stage-level build runs with on a host (build, its role's build_command,
    buildout_config; no host: the primary's): a change makes build:<stage> not up to date there. No secret
    in them (a password is refused in stages.ini)."""
    p = config.project
    command = config.build_command(stage, stage.primary if host is None else host)[0]
    settings = (p.build, command, stage.buildout_config if p.build == "buildout" else "")
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


def parse_stage_state(text: str) -> dict | None:
    """STAGE_STATE's output -> {"built": id, "record": "<token> <inputs>", "env_live": 1|0|-, "env_mode":
    "600", "env_sha256": hex, "published": target of shared/<stage>.env, "missing": [paths]}; None when the
    release is not ready."""
    lines = text.splitlines()
    if not lines or lines[0] != "ready":
        return None
    state: dict = {"built": "", "record": "", "env_live": "", "env_mode": "", "env_sha256": "", "published": "",
                   "missing": []}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        if key == "missing":
            state["missing"].append(value)
        elif key in state:
            state[key] = value.strip()
    return state


def stage_link_of(text: str) -> tuple[bool, str | None]:
    """STAGE_STATE's word on the stage's link: (True, its target, None for none) when it read it."""
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(" ")
        if key == "link":
            return True, value.strip() or None
    return False, None


def state_argv(layout: Layout, config: Config, stage: Stage, release: Release,
               keep_env: bool = False) -> tuple[list[str], bytes | None, bytes]:
    """What is_built asks a host: (argv, its input, the env file it should have); also sent ahead with
    other checks' reads (nodes.check_reads)."""
    names = [*config.project.shared_dirs, *config.project.shared_files]
    env = b"" if keep_env else env_file(layout, config, stage, release.id)   # keep_env: whatever it holds
    compare = not keep_env and len(env) <= TEXT_MAX and b"\0" not in env   # else the digest is asked
    argv = ["sh", "-c", STAGE_STATE, "sh", layout.release(release.id), layout.ready(release.id),
            layout.built_marker(stage.name), posixpath.dirname(layout.release_env(release.id, stage.name)),
            stage.name, layout.env_file(stage.name), layout.link(stage.link), str(len(env)) if compare else "",
            *names]
    return argv, env if compare else None, env


def is_built(t: Transport, layout: Layout, config: Config, stage: Stage, release: Release,
             keep_env: bool = False, known: KnownLinks | None = None) -> bool:
    """Ready, built for this stage with this release and these build settings, the env version its record
    names what it should be (mode 0600; with keep_env, a rollback's: the one the release runs with there,
    whatever it holds) and shared/<stage>.env the symlink through the link. The answer of the same read
    kept since this run's last command to the host is taken (the check's, for the build's action:
    Transport.call_kept)."""
    argv, given, env = state_argv(layout, config, stage, release, keep_env)
    compare = given is not None
    out = t.call_kept(argv, given)[1]
    state = parse_stage_state(out)
    seen, target = stage_link_of(out)
    if seen and known is not None:
        known.remember(t.host, stage.link, target)
    if not state:
        return False
    token, _, inputs = state.pop("record").partition(" ")
    live = state.pop("env_live")
    want = {"built": release.id, "env_mode": "600", "env_sha256": hashlib.sha256(env).hexdigest(),
            "published": layout.env_file_target(stage.link, stage.name), "missing": []}
    if compare and "env_same 1" in out.splitlines():
        state["env_sha256"] = want["env_sha256"]   # the host compared the very bytes
    if keep_env and re.fullmatch(r"[0-9a-f]{64}", state["env_sha256"]):
        want["env_sha256"] = state["env_sha256"]    # a rollback: the env file the release has, whatever it holds
    return (bool(token) and inputs == build_inputs(config, stage, t.host) and (live != "0" or not keep_env)
            and state == want)


def build_release(t: Transport, layout: Layout, config: Config, stage: Stage, release: Release,
                  fresh_stage_dirs: bool, keep_env: bool = False, tokens: tuple[str, str] | None = None,
                  then=()) -> None:
    """keep_env (a rollback): the release keeps the env file it runs with on the stage, if any. tokens: the
    names a new env version (and an older env file kept as one) get; the same on every host of a run.
    The unpack and the stage's files go in ONE exchange (the second runs only when the first succeeded),
    apart only when the failpoint between them is armed; then: reads [(key, Cmd)] sent after them in the
    same exchange, their answers kept (the switch's check: nodes.chain_reads)."""
    rel = layout.release(release.id)
    wheels = layout.wheels(release.wheels) if release.wheels else ""
    venv = layout.venv(release.wheels) if release.wheels else ""
    env_dir = posixpath.dirname(layout.release_env(release.id, stage.name))
    tokens = tokens or (env_token(), env_token())
    argv = ["sh", "-c", UNPACK, "sh", rel, layout.artifact(release.id), release.revision, wheels,
            release.to_json(), venv, posixpath.relpath(venv, rel) if venv else "",
            layout.ready(release.id), layout.release_meta(release.id),
            layout.venv_complete(release.wheels) if venv else "", env_dir, release.python, KEY_CODE,
            *[layout.join("shared", d) for d in config.project.shared_dirs],
            posixpath.dirname(layout.link(stage.link))]
    files = stage_files(layout, config, stage, release, fresh_stage_dirs, keep_env, tokens, False, t.host)
    # apart when a test stops the deployer between the two, or the env file cannot travel inline
    if failpoints.armed("build.after_unpack") or len(files.input) > INLINE_MAX or b"\0" in files.input:
        code, unpacked, err = t.call(argv)
        _unpacked(t, release, argv, code, err)
        failpoints.hit("build.after_unpack", t.host)
        build_stage(t, layout, config, stage, release, fresh_stage_dirs, keep_env, tokens,
                    "env_dir 700" in unpacked.splitlines())
        return
    (code, _, err), staged = t.read_batch(then, [Cmd(argv), Cmd(files.argv, files.input, if_ok=True)])
    _unpacked(t, release, argv, code, err)
    failpoints.hit("build.after_unpack", t.host)   # passed (a trace lists it), after the stage's files here
    finish_stage(t, layout, config, stage, release, files, *staged)


def _unpacked(t: Transport, release: Release, argv: list[str], code: int, err: str) -> None:
    if code == 4 and err.startswith("python "):
        raise StepError(f"{t.host}: python3 there is {err.split()[1]}, and release {release.id}'s wheelhouse was "
                        f"built for {release.python}: give this host that python3, or deploy a new release")
    if code != 0:
        raise CommandFailed(t.host, argv, code, err)


@dataclass
class StageFiles:
    """STAGE_FILES as a build sends it, and what the rest of the stage's build needs to know."""
    argv: list[str]
    input: bytes
    more: bool           # buildout or build_command follow
    inputs: str          # the digest of the build settings
    command: str
    build_argv: list[str]


def stage_files(layout: Layout, config: Config, stage: Stage, release: Release, fresh_stage_dirs: bool,
                keep_env: bool, tokens: tuple[str, str], env_dir_made: bool, host) -> StageFiles:
    rel = layout.release(release.id)
    links = shared_links(layout, config, rel)
    command, build_argv = config.build_command(stage, host)
    more = config.project.build == "buildout" or bool(command)
    inputs = build_inputs(config, stage, host)
    env = env_file(layout, config, stage, release.id)
    argv = ["sh", "-c", STAGE_FILES, "sh", rel, layout.link(stage.link),
            layout.link_target(stage.link, release.id), inputs, "1" if more else "",
            layout.env_record(release.id, stage.name), str(len(links) // 4), *links,
            *write_env_args(layout, stage, release.id, keep_env, tokens, env, env_dir_made),
            "1" if fresh_stage_dirs else "", layout.built_marker(stage.name), release.id,
            layout.stage_dir(stage.name, release.id), layout.stage_dirs(stage.name),
            *config.project.stage_dirs]
    return StageFiles(argv, env, more, inputs, command, list(build_argv))


def build_stage(t: Transport, layout: Layout, config: Config, stage: Stage, release: Release,
                fresh_stage_dirs: bool, keep_env: bool, tokens: tuple[str, str], env_dir_made: bool) -> None:
    """The stage level: shared links, a new env version if the environment changed, the release's generation
    of the stage dirs (built afresh with fresh_stage_dirs: the live release's is another directory), then
    buildout and build_command with that env, and the record and built marker last. The release live on the
    stage gets only the env version."""
    files = stage_files(layout, config, stage, release, fresh_stage_dirs, keep_env, tokens, env_dir_made, t.host)
    finish_stage(t, layout, config, stage, release, files, *t.call(files.argv, input=files.input))


def finish_stage(t: Transport, layout: Layout, config: Config, stage: Stage, release: Release, files: StageFiles,
                 code: int, out: str, err: str) -> None:
    """After STAGE_FILES answered: buildout and build_command when they follow, then the record and marker."""
    rel, inputs, command = layout.release(release.id), files.inputs, files.command
    if code == 4 and out.startswith("live, built with"):
        raise StepError(f"{t.host}: release {release.id} is live on {stage.name} and was built for it with other "
                        f"build settings (build, build_command or buildout_config changed since): building it "
                        f"again in place would change the live release; deploy a new revision to build with "
                        f"them (nothing was changed)")
    if code != 0:
        raise CommandFailed(t.host, ["sh", "-c", "build:" + stage.name], code, err)
    lines = out.splitlines()
    version = next((x[4:] for x in lines if x.startswith("env ")), "")
    if "live" in lines or not files.more:
        return
    if config.project.build == "buildout":
        buildout_step.run_buildout(t, layout, config, stage, release.id,
                                   layout.wheels(release.wheels) if release.wheels else "")
    if command:
        code, out, err = t.call(app_command(layout, stage.name, release.id, files.build_argv))
        if code != 0:
            last = last_line(err, out)
            raise StepError(f"{t.host}: build_command failed (exit {code}) in {rel}: {last}")
    t.run(["sh", "-c", FINISH, "sh", layout.env_record(release.id, stage.name), f"{version} {inputs}",
           layout.built_marker(stage.name), release.id])
