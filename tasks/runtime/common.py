"""What every step shares: the error users see, reading and writing files on a host (through stdin, never
argv), and parsing what was read."""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import posixpath
import socket
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from ..transport import Cmd, Transport


def stamp() -> dict:
    """Who did it, from where, when (UTC): the user and machine of this deployer, for locks and logs."""
    return {"user": getpass.getuser(), "machine": socket.gethostname(),
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def json_or_none(text: str | None):
    """The JSON value of text; None when it is empty or not JSON (a torn write, a missing file)."""
    try:
        return json.loads(text) if text and text.strip() else None
    except ValueError:
        return None


def last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one (a failed command's stderr, then stdout)."""
    for text in texts:
        lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
        if lines:
            return lines[-1].strip()
    return "?"


# $1 path, $2 mode, $3 its directory (made 0700 if missing), $4 the umask that creates a file with mode $2
# ("" when none does: then chmod), $5 (if given) the content, else stdin. Shell builtins where they serve:
# one program runs (mv) for content given as $5, two (cat, mv) for stdin, in the common case, where a
# dirname, a mkdir and a chmod ran before (each exec costs the host ~1 ms).
WRITE = ('umask 077; [ -d "$3" ] || mkdir -p -- "$3" || exit; if [ -e "$1.tmp" ] || [ -L "$1.tmp" ]; then '
         'rm -f -- "$1.tmp" || exit; fi; [ -z "$4" ] || umask "$4"; '
         '{ if [ $# -gt 4 ]; then printf \'%s\' "$5" > "$1.tmp"; else cat > "$1.tmp"; fi; } && '
         '{ [ -n "$4" ] || chmod "$2" "$1.tmp"; } && mv -f -- "$1.tmp" "$1"')


def write_file(t: Transport, path: str, data: bytes, mode: str = "600", public: bool = False) -> None:
    """Write to a temp name first, then rename: readers see all or nothing. The data goes through stdin
    (never argv); public data (no secret in it: a marker, an intent) that is text without NUL goes as an
    argument instead, written by the printf builtin (no cat)."""
    c = write_cmd(path, data, mode, public)
    t.run(c.argv, input=c.input)


def write_cmd(path: str, data: bytes, mode: str = "600", public: bool = False, if_ok: bool = False) -> Cmd:
    """write_file as a batch's command (if_ok: only when the one before it exited 0)."""
    bits = int(mode, 8)
    mask = "" if bits & 0o7111 else f"{0o777 & ~bits:03o}"   # 600 -> 177, 644 -> 133
    argv = ["sh", "-c", WRITE, "sh", path, mode, posixpath.dirname(path) or ".", mask]
    text = _public_text(data) if public else None
    if text is None:
        return Cmd(argv, input=data, if_ok=if_ok)
    return Cmd([*argv, text], if_ok=if_ok)


def _public_text(data: bytes) -> str | None:
    """data as an argument's text, when it can be one (UTF-8, no NUL); else None."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text


def read_text(t: Transport, path: str) -> str | None:
    code, out, _ = t.call(["cat", "--", path])
    return out if code == 0 else None


def append_line(t: Transport, path: str, record: dict) -> None:
    # One write(2) with O_APPEND (the printf builtin writes its whole output at once): concurrent appenders
    # never interleave inside a line. The record is no secret: it goes as an argument (no cat runs).
    line = json.dumps(record, sort_keys=True) + "\n"
    t.run(["sh", "-c", '[ -d "$2" ] || mkdir -p -- "$2" || exit; printf \'%s\' "$3" >> "$1"', "sh", path,
           posixpath.dirname(path) or ".", line])


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack_wheelhouse(requirements: Path, wheel_dir: Path, target: Path) -> None:
    """requirements.txt (what the hosts' venv installs) and the wheels, tarred, then renamed into place."""
    tmp = target.with_name(target.name + ".partial")
    with tarfile.open(tmp, "w:") as tar:
        tar.add(requirements, arcname="requirements.txt")
        for whl in sorted(wheel_dir.iterdir()):
            tar.add(whl, arcname=whl.name)
    os.replace(tmp, target)
