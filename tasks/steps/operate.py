"""The pure parts of the operator commands (run:<stage>, console:<stage>, logs:<stage>; operate.py runs them):
which hosts DEPLOY_HOSTS names, the short name that prefixes each host's lines, the argv run on a host, and
the exit code of a command run on many.

A host is named in DEPLOY_HOSTS as stages.ini writes it (ssh://deploy@web1:22), or by any shorter form that
names one host of the stage: deploy@web1:22, web1:22, deploy@web1, web1.
"""
from __future__ import annotations

import shlex
from typing import Sequence

from ..config import Host, Stage, split_list
from ..errors import StepError
from ..layout import Layout
from ..remote_shell import ssh_argv
from .environment import app_command

ALL = "all"
# `sh -c NO_STDIN sh ARGV...`: ARGV with /dev/null on its stdin (a command that asks for input ends instead
# of waiting for an answer that never comes; the channel's own stdin is the watchdog's: watchdog.py)
NO_STDIN = 'exec "$@" </dev/null'
# `sh -c IN_DIR sh DIR ARGV...`: ARGV in DIR, stdin /dev/null
IN_DIR = 'cd "$1" || exit 97; shift; exec "$@" </dev/null'


def host_names(host: Host) -> list[str]:
    """The ways DEPLOY_HOSTS may name a host, longest first."""
    if host.local:
        return ["local"]
    port = f":{host.port}" if host.port else ""
    user = f"{host.user}@" if host.user else ""
    return list(dict.fromkeys([host.spec, f"{user}{host.hostname}{port}", f"{host.hostname}{port}",
                               f"{user}{host.hostname}", host.hostname]))


def host_labels(hosts: Sequence[Host]) -> dict[Host, str]:
    """A short name for each host that tells it from the others: its host name, else name:port, else
    user@name:port (the lab's hosts are all 127.0.0.1), else the spec as written."""
    def forms(h: Host) -> list[str]:
        if h.local:
            return ["local"] * 4
        port = f":{h.port}" if h.port else ""
        return [h.hostname, f"{h.hostname}{port}", f"{h.user + '@' if h.user else ''}{h.hostname}{port}", h.spec]
    for i in range(4):
        labels = {h: forms(h)[i] for h in hosts}
        if len(set(labels.values())) == len(labels):
            return labels
    return {h: h.spec for h in hosts}


def select_hosts(stage: Stage, value: str | None, what: str, every: bool) -> tuple[Host, ...]:
    """The hosts DEPLOY_HOSTS (`value`) names, in the stage's order: `all`, or a comma-separated list; unset
    or empty: every host (every) or the stage's primary (primary =; default its first host). StepError for a
    name that is no host of the stage, or that names more than one."""
    value = (value or "").strip()
    if not value:
        return stage.hosts if every else (stage.primary,)
    if value == ALL:
        return stage.hosts
    chosen: set[Host] = set()
    known = ", ".join(str(h) for h in stage.hosts)
    for name in split_list(value):
        found = [h for h in stage.hosts if name in host_names(h)]
        if not found:
            raise StepError(f"{what}: DEPLOY_HOSTS names {name!r}, which is no host of stage {stage.name} (its "
                            f"hosts: {known}); write all, or some of those, comma-separated")
        if len(found) > 1:
            raise StepError(f"{what}: DEPLOY_HOSTS names {name!r}, which is {len(found)} hosts of stage "
                            f"{stage.name} ({', '.join(map(str, found))}); write each as stages.ini does")
        chosen.add(found[0])
    return tuple(h for h in stage.hosts if h in chosen)


def prefixed(label: str, line: str) -> str:
    return f"[{label}] {line}"


def exit_status(code: int) -> int:
    """A process's return code as a shell reports it: killed by signal N (subprocess: -N) is 128 + N."""
    return 128 - code if code < 0 else code


def worst(codes: Sequence[int]) -> int:
    """The exit code of a command run on many hosts: 0 when every host's is, else the highest."""
    return max((exit_status(c) for c in codes), default=0)


def run_argv(layout: Layout, stage: Stage, rid: str, argv: Sequence[str]) -> list[str]:
    """argv in release `rid` with the env it runs with on the stage (loaded on the host from its env file:
    no value of it is on any command line), its stdin /dev/null."""
    return ["sh", "-c", NO_STDIN, "sh", *app_command(layout, stage.name, rid, list(argv), live=True)]


def console_argv(layout: Layout, stage: Stage, rid: str) -> list[str]:
    """console_command in the live release with its env; its stdin is the operator's."""
    return app_command(layout, stage.name, rid, list(stage.console_argv), live=True)


def log_argv(layout: Layout, stage: Stage) -> list[str]:
    """log_command in deploy_root (tail -F shared/log/app.log reads the shared dir)."""
    return ["sh", "-c", IN_DIR, "sh", layout.root, *stage.log_argv]


def ssh_console(host: Host, options: Sequence[str], argv: Sequence[str], tty: bool) -> list[str]:
    """ssh running argv on the host with the run's options: a terminal there when the operator has one
    (tty), else its stdin forwarded as it is (a pipe). The argv is quoted once for the login shell."""
    return ssh_argv(host.hostname, host.user, host.port, options, [shlex.join(argv)], tty=tty)
