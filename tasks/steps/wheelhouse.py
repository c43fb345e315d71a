"""wheelhouse (build = pip): the app's requirements resolved ONCE, on the deploying machine, for the hosts'
own interpreter, built into wheels that every host installs with `pip install --no-index`.

- The requirements are read from the archive (the exported revision, never the working tree): the file
  `[project] requirements` names (requirements.txt) and every file it includes with -r / -c, transitively;
  an include that leaves the archive (an absolute path, '..' past its top) is refused.
- pip evaluates environment markers and Requires-Python on the interpreter that runs it, whatever
  --python-version says (pypa/pip #11010): a deployer on 3.11.7 leaves out `x; python_full_version <
  "3.11.3"` that a 3.11.2 host needs. So the resolution is uv's (`uv pip compile --python-version`, which
  resolves for a target interpreter), for the hosts' exact version read from them (steps/facts.py); pip
  then builds exactly those pins (`pip wheel --no-deps`), with the user's pip configuration.
- The wheelhouse's digest covers the hosts' interpreter: the local tar, the hosts' wheels dir and their
  venv are all keyed by it, so a wheelhouse made for another interpreter is never reused.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .. import localcmd
from ..errors import StepError
from ..runtime.common import last_line, pack_wheelhouse
from ..transport import Transport
from .facts import INTERPRETER, interpreter_argv, interpreter_key, interpreter_text, parse_interpreter

# -r FILE, --requirement FILE, --requirement=FILE, -rFILE; likewise -c / --constraint
INCLUDE_RE = re.compile(r"^(?:-(?P<short>[rc])\s*|--(?P<long>requirement|constraint)(?:\s*=\s*|\s+))(?P<path>\S+)")
# a requirement (or a find-links directory) that is a path inside the repository: its bytes are part of
# what is built, so the digest then covers the whole archive
LOCAL_RE = re.compile(r"^(?:-e\s*|--editable(?:\s*=\s*|\s+))?(?:\.|/|file:)|^(?:-f|--find-links)[\s=]*(?=\S)"
                      r"(?!\S*://)")


# -- the requirements, from the archive ------------------------------------------------------------------
def logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, line) as pip reads a requirements file: backslash continuations joined, comments
    (# at the start or after whitespace) dropped, blank lines skipped."""
    buf, start = "", 0
    for no, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = no
        if raw.endswith("\\"):
            buf += raw[:-1]
            continue
        line = re.sub(r"(^|\s+)#.*$", "", buf + raw).strip()
        buf = ""
        if line:
            yield start, line


def include_target(path: str, no: int, ref: str) -> str:
    """The archive path an include of `path` names, or a one-line refusal when it leaves the archive."""
    if "://" in ref or ref.startswith(("/", "~")):
        raise StepError(f"archive: {path}:{no}: {ref} is outside the archive (an absolute path or a URL); "
                        "commit that file and include it by a path relative to the including file")
    target = posixpath.normpath(posixpath.join(posixpath.dirname(path), ref))
    if target == ".." or target.startswith("../"):
        raise StepError(f"archive: {path}:{no}: {ref} leaves the archive; move that file into the repository")
    return target


def requirement_files(read: Callable[[str], bytes | None], top: str) -> tuple[dict[str, bytes], bool]:
    """({archive path: bytes} of `top` and every file it includes, whether a requirement is a local path)."""
    files: dict[str, bytes] = {}
    local = False
    todo = [(top, "", 0)]
    while todo:
        path, by, no = todo.pop()
        if path in files:
            continue
        data = read(path)
        if data is None:
            if not by:
                raise StepError(f"archive: build = pip needs {path} in the app's repository (the requirements "
                                "key of [project] names it); commit it, or set requirements =, or build = none")
            raise StepError(f"archive: {by}:{no} includes {path}, which is not in the revision's archive; commit it")
        files[path] = data
        for n, line in logical_lines(data.decode("utf-8", errors="replace")):
            m = INCLUDE_RE.match(line)
            if m:
                todo.append((include_target(path, n, m.group("path")), path, n))
            elif LOCAL_RE.match(line):
                local = True
    return files, local


def archive_reader(archive: Path) -> Callable[[str], bytes | None]:
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar if m.isreg()}

    def read(path: str) -> bytes | None:
        if path not in members:
            return None
        with tarfile.open(archive, "r:gz") as tar:
            return tar.extractfile(members[path].name).read()
    return read


def wheelhouse_digest(key: str, files: dict[str, bytes], archive_sha: str = "") -> str:
    h = hashlib.sha256(f"pip\0{key}\0{archive_sha}".encode())
    for path in sorted(files):
        h.update(b"\0" + path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return h.hexdigest()[:16]


# -- the hosts' interpreter ---------------------------------------------------------------------------
def read_interpreter(t: Transport, build: str = "pip") -> dict[str, str]:
    code, out, err = t.call(interpreter_argv())
    if code == 127 or (code != 0 and "not found" in err):
        raise StepError(f"{t.host}: python3 is not on the host's PATH; build = {build} makes each release's venv "
                        "with it: install python3 and python3-venv there")
    env = parse_interpreter(out) if code == 0 else None
    if env is None:
        raise StepError(f"{t.host}: python3 did not say what it is ({last_line(err, out)}); "
                        "make `python3` on the host's PATH a working Python 3")
    return env


def local_interpreter() -> dict[str, str]:
    """This machine's: the interpreter whose pip builds the wheels."""
    out = localcmd.call([sys.executable, "-I", "-S", "-c", INTERPRETER]).stdout
    env = parse_interpreter(out)
    assert env is not None, out
    return env


def choose_interpreter(found: Iterable[tuple[object, dict[str, str]]], here: dict[str, str],
                       what: str = "archive") -> dict[str, str]:
    """The one interpreter the wheelhouse is built for. Hosts that disagree, or an interpreter whose wheels
    this machine cannot build (another Python minor version, implementation, OS or machine), are refused
    in one line naming the hosts."""
    by: dict[str, list[str]] = {}
    envs: dict[str, dict[str, str]] = {}
    for host, env in found:
        key = interpreter_key(env)
        by.setdefault(key, []).append(str(host))
        envs[key] = env
    if len(by) > 1:
        said = "; ".join(f"{', '.join(hs)}: {interpreter_text(envs[k])}" for k, hs in by.items())
        raise StepError(f"{what}: the hosts that get this release run different Pythons ({said}); one "
                        "wheelhouse is built for one interpreter: give every host the same python3")
    (key, env), = envs.items()
    same = ("implementation_name", "python_version", "sys_platform", "platform_machine")
    if any(env[k] != here[k] for k in same):
        raise StepError(f"{what}: the hosts ({', '.join(by[key])}) run {interpreter_text(env)} and doit runs here "
                        f"on {interpreter_text(here)}: the wheels built here would not install there; run doit "
                        f"with a {env['platform_python_implementation']} {env['python_version']} on "
                        f"{env['sys_platform']} {env['platform_machine']}")
    return env


def check_interpreter(t: Transport, release_key: str, rid: str, build: str = "pip") -> None:
    """Before a release goes to a host (a promotion): the host's python3 is the one its wheelhouse is for."""
    env = read_interpreter(t, build)
    if interpreter_key(env) != release_key:
        raise StepError(f"{t.host}: runs {interpreter_text(env)}, and release {rid}'s wheelhouse was built for "
                        f"{release_key} (the hosts it was archived for): give this host that python3, or "
                        "deploy a new release once every host runs the same one")


# -- building it ----------------------------------------------------------------------------------------
def pip_index_args() -> list[str]:
    """The user's pip configuration (files and PIP_* variables, as `pip config list` shows it) said to uv:
    index-url, extra-index-url, find-links, no-index, constraint. An environment variable wins over a
    command's section ([wheel]), which wins over [global]. Like pip, uv then takes the best version from
    all the indexes (its own default stops at the first index that has the name)."""
    res = localcmd.call([sys.executable, "-m", "pip", "config", "list"])
    return uv_args_of(res.stdout if res.code == 0 else "")


def uv_args_of(listing: str) -> list[str]:
    rank = {":env:": 3, "wheel": 2, "global": 1}
    best: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        m = re.match(r"^([^.=]+)\.([a-z-]+)='(.*)'$", line.strip())
        if not m or m.group(1) not in rank:
            continue
        section, key, value = m.groups()
        if key in ("index-url", "extra-index-url", "find-links", "no-index", "constraint"):
            if rank[section] > best.get(key, (0, ""))[0]:
                best[key] = (rank[section], value)
    args: list[str] = ["--index-strategy", "unsafe-best-match"]   # pip's way: every index, the best version
    for key, flag in (("index-url", "--index-url"), ("extra-index-url", "--extra-index-url"),
                      ("find-links", "--find-links"), ("constraint", "--constraint")):
        for value in best.get(key, (0, ""))[1].split():
            args += [flag, value]
    if best.get("no-index", (0, ""))[1].lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    return args


def uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:
        raise StepError("archive: build = pip resolves the requirements for the hosts' Python with uv, which "
                        "is not installed here; pip install uv (a dependency of doit-stages)") from None
    return find_uv_bin()


def build_wheelhouse(archive: Path, target: Path, top: str, env: dict[str, str]) -> None:
    """Unpack the archive, resolve `top` for the hosts' interpreter (uv), build every pin (pip), keep the
    pins as the wheelhouse's requirements.txt, tar it all into `target`."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, wheels, pinned = Path(tmp) / "src", Path(tmp) / "wheels", Path(tmp) / "pinned.txt"
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(src, filter="data")
        index = pip_index_args()
        res = localcmd.call([uv_binary(), "pip", "compile", "--quiet", "--no-header", "--no-annotate",
                             "--python", sys.executable, "--python-version", env["python_full_version"],
                             *index, "-o", str(pinned), top], cwd=src)
        if res.code != 0:
            raise StepError(failure_message(top, env, res.stdout, res.stderr))
        res = localcmd.call([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
                             "--ignore-requires-python", "-w", str(wheels), "-r", str(pinned)], cwd=src)
        if res.code != 0:
            raise StepError(failure_message(top, env, res.stdout, res.stderr))
        check_glibc(wheels, env)
        hosts_req = Path(tmp) / "requirements.txt"
        hosts_req.write_text("".join(f"{line}\n" for line in pins_of(p.name for p in wheels.glob("*.whl"))))
        pack_wheelhouse(hosts_req, wheels, target)


def pins_of(wheel_names: Iterable[str]) -> list[str]:
    """name==version of each wheel file: exactly what the hosts install (nothing resolved there)."""
    pins = set()
    for name in wheel_names:
        dist, version = name.split("-")[:2]
        pins.add(f"{re.sub(r'[-_.]+', '-', dist).lower()}=={version}")
    return sorted(pins)


MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def glibc_needed(wheel_name: str) -> tuple[int, int] | None:
    """The oldest glibc a wheel's platform tags accept (None: any, e.g. a pure-Python wheel)."""
    platforms = wheel_name[:-4].split("-")[-1].split(".")
    need = []
    for p in platforms:
        m = re.match(r"manylinux_(\d+)_(\d+)_", p)
        if m:
            need.append((int(m.group(1)), int(m.group(2))))
        elif p.split("_")[0] in MANYLINUX:
            need.append(MANYLINUX[p.split("_")[0]])
        else:
            return None
    return min(need) if need else None


def check_glibc(wheels: Path, env: dict[str, str]) -> None:
    m = re.match(r"glibc (\d+)\.(\d+)", env.get("libc", ""))
    if not m:
        return
    have = (int(m.group(1)), int(m.group(2)))
    for whl in sorted(wheels.glob("*.whl")):
        need = glibc_needed(whl.name)
        if need and need > have:
            raise StepError(f"archive: {whl.name} (picked by pip here) needs glibc {need[0]}.{need[1]}, and the "
                            f"hosts have {have[0]}.{have[1]}; pin a version with a wheel for older systems, or "
                            "run doit on a machine as old as the hosts")


# -- what went wrong, in one line ----------------------------------------------------------------------
MISSING = (
    (re.compile(r"fatal error: ([\w./+-]+\.h): No such file or directory"), "the C header {} is missing here"),
    (re.compile(r"\b(mysql_config|mariadb_config|pg_config|pkg-config)\b[^\n]*\bnot found"),
     "{} is not installed here"),
    (re.compile(r"(?:/bin/sh: (?:\d+: )?)([\w.+-]+): (?:command )?not found"), "{} is not installed here"),
    (re.compile(r"command '([^']+)' failed: No such file or directory"), "{} is not installed here"),
    (re.compile(r"Can not find valid pkg-config name"),
     "pkg-config finds no MySQL/MariaDB client library (its development files are not installed here)"),
)
DRIVERS = {"mysqlclient": "install the MySQL/MariaDB client headers and a compiler (Debian: apt-get install "
                          "default-libmysqlclient-dev pkg-config build-essential), or use PyMySQL or "
                          "mysql-connector-python instead (README: the database driver)",
           "psycopg2": "install libpq's headers and a compiler (Debian: apt-get install libpq-dev build-essential), "
                       "or require psycopg2-binary or psycopg[binary] instead"}


def failed_requirement(out: str, err: str) -> str | None:
    text = f"{out}\n{err}"
    for pattern in (r"Failed to build `([^`]+)`", r"Failed building wheel for (\S+)", r"Failed to build (\S+)",
                    r"Failed to download `([^`]+)`"):
        found = re.findall(pattern, text)
        if found and found[-1] not in ("one",):
            return found[-1].split(" @ ")[0]
    found = re.findall(r"^\s*(?:Collecting|Processing) (\S+)", out, re.M)
    return found[-1] if found else None


def missing_thing(text: str) -> str | None:
    for pattern, said in MISSING:
        found = pattern.findall(text)
        if found:
            return said.format(found[-1]) if "{}" in said else said
    found = re.findall(r"^\s*(\w+(?:Error|Exception)): (.+)$", text, re.M)
    return f"{found[-1][0]}: {found[-1][1].strip()}" if found else None


def failure_message(top: str, env: dict[str, str], out: str, err: str) -> str:
    """uv's or pip's failure as one line: the requirement that failed, why (the missing program or header
    when the output names one), and what to do."""
    req = failed_requirement(out, err)
    why = missing_thing(f"{out}\n{err}")
    if req is None or why is None:
        line = [ln.strip(" ×╰─▶│") for ln in f"{err}\n{out}".splitlines() if ln.strip(" ×╰─▶│")]
        reason = next((ln for ln in line if "No solution found" not in ln and not ln.startswith("hint:")), "?")
        if req is None:
            return (f"archive: cannot resolve {top} for the hosts' {interpreter_text(env)}: {reason}; fix the "
                    "requirements (or the index pip is configured with)")
        why = why or reason
    name = re.split(r"[\s<>=!~;\[@]", req)[0]
    todo = DRIVERS.get(re.sub(r"[-_.]+", "-", name).lower(),
                       "install what it needs to build on this machine, or require a version that has a wheel")
    return f"archive: cannot build a wheel of {req} on this machine: {why}; {todo}"
