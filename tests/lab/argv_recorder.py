"""doit run as the tests run it, recording every argv the run starts: each process of the deploying machine
(subprocess.Popen: ssh, git, pip, a [secrets] command) and each command sent to a host through the framed
session (remote_shell.command_text: the argv a host's shell is given). One JSON line ["local"|"remote",
argv] each, appended to LOG: what `ps` on either machine could show of the run.

    python -m tests.lab.argv_recorder LOG -f dodo.py deploy:test     (cwd: anywhere; PYTHONPATH: the repo)

recorded_argvs(LOG) reads them back.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path


def install(log: str) -> None:
    lock = threading.Lock()

    def record(where: str, argv) -> None:
        words = [argv] if isinstance(argv, (str, bytes)) else list(argv)
        line = json.dumps([where, [w.decode(errors="replace") if isinstance(w, bytes) else str(w) for w in words]])
        with lock, open(log, "a") as f:
            f.write(line + "\n")

    popen_init = subprocess.Popen.__init__

    def init(self, args, *a, **kw):
        record("local", args)
        popen_init(self, args, *a, **kw)

    subprocess.Popen.__init__ = init

    from doit_stages import remote_shell
    command_text = remote_shell.command_text

    def text(argv):
        record("remote", argv)
        return command_text(argv)

    remote_shell.command_text = text


def recorded_argvs(log: Path) -> list[tuple[str, list[str]]]:
    return [tuple(json.loads(x)) for x in log.read_text().splitlines()] if log.exists() else []


def main() -> None:
    install(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]   # start.py reads the command line (which tasks run)
    from doit.doit_cmd import DoitMain
    sys.exit(DoitMain().run(sys.argv[1:]))


if __name__ == "__main__":
    main()
