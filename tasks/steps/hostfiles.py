"""The host-side programs (tasks/hostside/*.py) as files on a host, for `<python> <file> args...`.

Never `python -c <text>`: a zc.recipe.egg `interpreter =` script (`bin/py`) runs `-c CODE` inside its
option loop, before it sets sys.argv, so a program given as -c misreads its arguments; given a file, it
sets sys.argv as python does. So the rehearsal's and the bounded migration's runners run as files.

Where: .deploy/programs/<digest>/ (layout.programs), the digest of the programs together, one directory
per version of the tool. Written whole or not at all: into a temporary directory, `complete` last, then
renamed into place, in the same command that finds it already there (one round trip either way; the
programs' text travels as arguments, no secret in it). Only a run holding the host's lock writes there,
and a directory once in place never changes: a migration a dead run left to finish alone keeps its
program while a newer tool writes its own beside it.
"""
from __future__ import annotations

import posixpath

from .. import hostside
from ..layout import Layout
from ..runtime.leftovers import owner_tag
from ..transport import Transport

# $1 the directory, $2 a temporary suffix (this run's owner tag), then name/text pairs. A directory without
# `complete` (not one this code made: it renames only whole ones into place) is replaced.
SHIP = hostside.script("hostfiles_ship.sh")


def ship_programs(t: Transport, layout: Layout) -> str:
    """The host's directory of the programs, written there first if it is not (one round trip)."""
    where = layout.programs(hostside.digest())
    pairs = [x for name in hostside.PROGRAMS for x in (name, hostside.source(name))]
    t.run(["sh", "-c", SHIP, "sh", where, owner_tag(), *pairs])
    return where


def program(where: str, name: str) -> str:
    """The path of one program in the directory ship_programs returned."""
    return posixpath.join(where, name)
