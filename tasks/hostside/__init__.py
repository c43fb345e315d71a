"""Code that runs on a host, kept here as files: linted and tested as code, not strings in a module.

Shell scripts, *.sh: POSIX sh, each sent as `sh -c SCRIPT sh ARGS...` (values only as "$1"...; the session
runs it by its own shell: remote_shell.command_text), loaded once at import by script(). A file's header,
its leading lines that start with "#" but not "#!" (what it is, who sends it, shellcheck's directives), is
not sent: a host gets the rest, byte for byte. The hosts' /bin/sh must know `local` (dash, bash, busybox
ash and mksh do; ksh93 does not), for watch_lib.sh's functions, which recurse; no other script uses it.
tests/integration/test_hostside.py runs `shellcheck -s sh` and `sh -n` over every one of them.

    facts.sh, build_stage_state.sh,     state readers, each pinned by canned output in tests/facts/
      switch_state.sh, lock_probe.sh
    watch_lib.sh, watch.sh, watch_end.sh  the watchdog around every session; a dead run's work ended
    lock_take.sh, upload_receive.sh,    the steps' writes, one command each
      build_unpack.sh, build_stage_files.sh (with env_write.sh in it), buildout_dispatchers.sh (which
      writes buildout_dispatcher.sh), links_switch.sh, cleanup_remove.sh, backup_verify.sh,
      hostfiles_ship.sh

Short Python programs sent as `python3 -c PROGRAM ARGS...`, loaded by script() too:

    interpreter.py      the host python3's marker environment (steps/facts.py)
    sqlite_counts.py    a sqlite database's row counts (engines/sqlite.py)
    sqlite_copy.py      a consistent copy of a sqlite database (engines/sqlite.py)
    dumpfilter.py       the one pass over a MySQL dump or restore: compressed, hashed, rows counted
                        (engines/mysql.py; also imported here by its unit tests)

Programs run by the app's own interpreter, each shipped to the host as a file (steps/hostfiles.py) and run
as `<python> <file> args...`: PROGRAMS. Standard library and Django only (that interpreter is the app's,
not the tool's); no imports of this package, except rehearsal_runner.py's of rehearsal_probe.py and
rehearsal_probe_pg.py (and that one's of rehearsal_probe.py), its neighbours on the host.

    rehearsal_probe.py    the copy's schema, table sizes and the write probe (also imported here, by
                          engines/mysql.py: the probe module of steps/migration/rehearsal_copy.py, for password_env)
    rehearsal_probe_pg.py the same on PostgreSQL (engines/postgresql_rehearsal.py)
    rehearsal_runner.py   the rehearsal on a copy, and the applied/pending migrations for the guard
    migrate_runner.py     production's `manage.py migrate` with bounded lock waits
"""
from __future__ import annotations

import hashlib
from importlib import resources

PROGRAMS = ("rehearsal_probe.py", "rehearsal_probe_pg.py", "rehearsal_runner.py", "migrate_runner.py")


def source(name: str) -> str:
    """The text of one of PROGRAMS, read from the installed package."""
    if name not in PROGRAMS:
        raise KeyError(name)
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def script(name: str) -> str:
    """The script tasks/hostside/<name> (a .sh, or a short .py sent by `python3 -c`) as a host gets it: the
    file without its header."""
    lines = resources.files(__package__).joinpath(name).read_text(encoding="utf-8").split("\n")
    n = 0
    while n < len(lines) and lines[n].startswith("#") and not lines[n].startswith("#!"):
        n += 1
    return "\n".join(lines[n:])


def digest() -> str:
    """One digest of all the programs together: the name of their directory on a host."""
    h = hashlib.sha256()
    for name in PROGRAMS:
        data = source(name).encode()
        h.update(f"{name}\0{len(data)}\0".encode() + data)
    return h.hexdigest()[:16]
