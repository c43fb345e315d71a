"""Programs that run on a host, by the app's own interpreter: each a real .py file here, shipped to the
host as a file (steps/hostfiles.py) and run as `<python> <file> args...`.

Standard library and Django only (that interpreter is the app's, not the tool's); no imports of this
package, except rehearsal_runner.py's of rehearsal_probe.py, its neighbour on the host.

    rehearsal_probe.py    the copy's schema, table sizes and the write probe (also imported here, by
                          steps/migration/rehearsal_copy.py, for password_env)
    rehearsal_runner.py   the rehearsal on a copy, and the applied/pending migrations for the guard
    migrate_runner.py     production's `manage.py migrate` with bounded lock waits
"""
from __future__ import annotations

import hashlib
from importlib import resources

PROGRAMS = ("rehearsal_probe.py", "rehearsal_runner.py", "migrate_runner.py")


def source(name: str) -> str:
    """The text of one of PROGRAMS, read from the installed package."""
    if name not in PROGRAMS:
        raise KeyError(name)
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def digest() -> str:
    """One digest of all the programs together: the name of their directory on a host."""
    h = hashlib.sha256()
    for name in PROGRAMS:
        data = source(name).encode()
        h.update(f"{name}\0{len(data)}\0".encode() + data)
    return h.hexdigest()[:16]
