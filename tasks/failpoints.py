"""Named failpoints, as TiKV's fail-rs and FreeBSD's fail(9): a test arms one to crash, fail or stall the
deployer at an exact line, so "a crash anywhere leaves nothing half-done" is proven point by point instead
of by sleeping and hoping.

Test-only: armed through the environment variable DEPLOY_FAILPOINTS, e.g.

    DEPLOY_FAILPOINTS='switch.after_rename=kill'             SIGKILL the deployer right there
    DEPLOY_FAILPOINTS='migrate.before_backup_after=raise'     fail the step there (a StepError)
    DEPLOY_FAILPOINTS='upload.mid_transfer=stall:30'          sleep 30 s there (a hung deployer)
    DEPLOY_FAILPOINTS='build.after_unpack=pause'             SIGSTOP the deployer there until SIGCONT (a
                                                             test does something meanwhile, e.g. kills a host)

Several are separated by ';'. Any action may be limited to one host with `@<host spec>`
(`switch.after_rename=kill@ssh://deploy@web2:22`). DEPLOY_FAILPOINTS_TRACE=<file> appends one line per
failpoint passed (`<name>\t<host or ->`), armed or not: how a test learns which points a command's path
has. Unarmed and untraced, a failpoint costs two dictionary lookups.
"""
from __future__ import annotations

import os
import signal
import time

from .errors import StepError

ENV = "DEPLOY_FAILPOINTS"
TRACE_ENV = "DEPLOY_FAILPOINTS_TRACE"
# every failpoint the code has: a test that arms an unknown name fails loudly instead of proving nothing
NAMES = (
    "upload.mid_transfer", "build.after_unpack", "restore.before_load",
    "migrate.after_backup_before", "migrate.after_migrate", "migrate.before_backup_after",
    "migrate.before_restore",
    "switch.after_intent", "switch.after_rename", "switch.after_reload", "switch.before_log",
    "switch.after_log",
)


class FailpointError(StepError):
    """Raised by a failpoint armed with `raise`: the step fails as if its command had failed."""


def parse(text: str) -> dict[str, str]:
    """'a=kill;b=stall:3' -> {'a': 'kill', 'b': 'stall:3'}; an unknown name or action is a ValueError."""
    armed = {}
    for item in filter(None, (x.strip() for x in text.split(";"))):
        name, _, action = item.partition("=")
        if name not in NAMES:
            raise ValueError(f"{ENV}: unknown failpoint {name!r}; known: {', '.join(NAMES)}")
        kind = action.split("@")[0].split(":")[0]
        if kind not in ("kill", "raise", "stall", "pause"):
            raise ValueError(f"{ENV}: {name}: action {action!r} is not kill, raise, pause or stall:<seconds>")
        armed[name] = action
    return armed


def armed(name: str) -> bool:
    """Is the failpoint armed (on any host)? Two commands merged into one exchange go apart when the one
    between them is, so that a test stops the deployer exactly there."""
    text = os.environ.get(ENV)
    return bool(text) and name in parse(text)


def hit(name: str, host: object = None) -> None:
    """Do what the failpoint `name` is armed with, if it is; `host` limits `@<spec>` actions."""
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, "a") as f:   # one short write: lines from several threads never interleave
            f.write(f"{name}\t{host if host is not None else '-'}\n")
    text = os.environ.get(ENV)
    if not text:
        return
    action = parse(text).get(name)
    if action is None:
        return
    kind, _, only = action.partition("@")
    if only and str(host) != only:
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)   # every thread stops; SIGCONT lets the run go on
    elif kind == "raise":
        raise FailpointError(f"failpoint {name} armed to fail" + (f" on {host}" if host else ""))
    else:
        time.sleep(float(kind.split(":", 1)[1]))
