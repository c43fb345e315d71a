"""hooks: the commands of the hook keys (config/hooks.py), run around a node (before_<node>, after_<node>,
inside the node's action: nodes.py; after_switch per host inside the switch: switch.py) and after a
command (on_success, on_failure: doit_tasks.py, when doit's run ends).

On the hosts: every host of the stage at once (each its role's `key.<role>` where the stage has one), in the
release with its env for the stage (app_command, as build_command runs) where the release is built for the
stage; where it is not (the upload's hooks, before_build, an on_failure before the build), in deploy_root,
without the app's env. `local:`: once on this machine, in the directory of stages.ini, with DEPLOY_* (Context)
in its environment. Every line a hook prints is shown as it comes (a local hook's when it ends), after its host.
A failing hook raises one StepError naming the key (not its command, which may hold a token), the host, its
exit status and last line.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from .. import localcmd
from ..config import Hook, Stage
from ..errors import StepError
from ..runtime.common import last_line, stamp
from ..transport import CommandFailed, Transport
from .environment import app_command
from .links import stage_releases

# $1 the release's env record for the stage ("" when there is no release), $2 deploy_root, $3 how many words
# of app_command come first: with the record there (the release is built for the stage) the whole argv runs
# (app_command: the release, its env); else the hook's own argv after them, in deploy_root (the login's home
# while there is none yet).
WHERE = ('r=$1; d=$2; n=$3; shift 3; if [ -n "$r" ] && [ -e "$r" ]; then exec "$@"; fi; '
         'cd -- "$d" 2>/dev/null || cd || exit 97; shift "$n"; exec "$@"')
# the commands and nodes whose stage's on_success / on_failure run at the end of the run
OUTCOME_KINDS = ("deploy", "promote", "rollback", "upload", "build", "migrate", "switch", "verify")


@dataclass(frozen=True)
class Context:
    """What a `local:` hook is told, as DEPLOY_* variables. result and error: of the command (on_* only)."""
    command: str
    stage: str
    release: str = ""
    revision: str = ""
    previous: str = ""
    user: str = ""
    result: str = ""
    error: str = ""

    def environ(self) -> dict[str, str]:
        return {f"DEPLOY_{k.upper()}": v for k, v in self.__dict__.items()}


def command_of(argv: list[str], stage: Stage, default: str) -> str:
    """The task on doit's command line that names the stage (deploy:test), else `default` (the node)."""
    words = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
    return next((w for w in words if w.partition(":")[2] == stage.name), default)


def context(s, stage: Stage, release, what: str, result: str = "", error: str = "") -> Context:
    """release: the Release this run gives the stage, or None (then the one live on its first host)."""
    switched = stage.name in s.switched_from
    live = None
    if release is None or not switched:
        try:
            live = stage_releases(s, stage, what)[0]
        except (StepError, CommandFailed):
            live = None
    previous = s.switched_from[stage.name] if switched else live
    return Context(command=command_of(s.argv, stage, what), stage=stage.name,
                   release=release.id if release is not None else live or "",
                   revision=release.revision if release is not None else "", previous=previous or "",
                   user=stamp()["user"], result=result, error=error)


def around(s, r, stage: Stage, node: str, work, rids=None):
    """A node's work between the stage's before_<node> and after_<node> (a node's hooks are part of its
    work: nodes.py, and commands.py for verify). before_<node> runs once the node holds its hosts' locks
    and before it changes anything: a failure fails the node, which changed nothing. after_<node> runs
    when the work is done: a failure fails the node, and its rerun does the node and its hooks again. A
    node that is up to date runs neither (doit runs no action). after_switch is run by the switch itself.
    r: the run's Releases; rids: a function giving where hooks on hosts run (default: this run's release)."""
    what = f"{node}:{stage.name}"
    before, after = f"before_{node}", f"after_{node}"
    has_before, has_after = stage.has_hook(before), node != "switch" and stage.has_hook(after)
    if not has_before and not has_after:
        return work()
    where = rids or (lambda: r.of(stage).id)

    def make_context():
        return context(s, stage, r.known(stage), what)
    if has_before:
        s.lock(stage.hosts, what)
        try:
            run_hook(s, stage, before, where, make_context)
        except StepError as exc:
            raise StepError(f"{exc}; {what} changed nothing") from None
    summary = work()
    if has_after:
        run_hook(s, stage, after, where, make_context)
    return summary


def run_hook(s, stage: Stage, key: str, rids, make_context, on_hosts: bool = True) -> None:
    """The stage's hooks of `key`: a `local:` one once here, and on each host its own (its role's `key.<role>`,
    else the key's). rids: the release each host runs it in ({host: id}, one id for all, None: deploy_root;
    or a function giving one of those, asked only when a host runs a hook); make_context: the Context of a
    local hook (asked only for one). on_hosts=False: the local one only."""
    what = key   # not the command: a token written into it would be in every error and DEPLOY_ERROR
    hook = stage.hook(key)
    if hook is not None and hook.local:
        try:
            run_local(s.config.workdir, hook, make_context(), what)
        finally:   # it may have changed a host by its own way: what the run read there before is read again
            s.forget_reads()
    hosts = [h for h in stage.hosts if _remote(stage.hook(key, h))] if on_hosts else []
    if not hosts:
        return
    rids = rids() if callable(rids) else rids
    per_host = rids if isinstance(rids, dict) else {h: rids for h in stage.hosts}
    s.hosts.each(hosts, lambda t: run_on_host(t, s.layout, stage, stage.hook(key, t.host), per_host.get(t.host)),
                 what)


def _remote(hook: Hook | None) -> bool:
    return hook is not None and not hook.local


def run_local(workdir, hook: Hook, ctx: Context, what: str) -> None:
    done = localcmd.call(hook.argv, cwd=workdir, env=ctx.environ())
    for line in (done.stdout + done.stderr).splitlines():
        say("local", line)
    if done.code != 0:
        raise StepError(f"{what} failed here: {exit_text(done.code, done.stderr, done.stdout)}")


def run_on_host(t: Transport, layout, stage: Stage, hook: Hook, rid: str | None) -> None:
    prefix = app_command(layout, stage.name, rid, []) if rid else []
    argv = ["sh", "-c", WHERE, "sh", layout.env_record(rid, stage.name) if rid else "", layout.root,
            str(len(prefix)), *prefix, *hook.argv]
    code, out, err = t.stream_lines(argv, lambda _stream, line: say(t.host, line))
    if code != 0:
        raise StepError(f"{t.host}: {exit_text(code, err, out)}")


def exit_text(code: int, err: str, out: str) -> str:
    """`exit 3: <its last line>`, or `exit 3` when it printed nothing."""
    last = last_line(err, out)
    return f"exit {code}" if last == "?" and not (err + out).strip() else f"exit {code}: {last}"


def host_hook(s, stage: Stage, key: str, rid: str):
    """A hook on hosts as a step runs it itself, one host at a time (after_switch, inside the switch of each
    host): a function of the host's Transport that raises StepError; None when the stage has none (or a
    `local:` one: that runs once, by run_hook)."""
    if not any(_remote(stage.hook(key, h)) for h in stage.hosts):
        return None

    def one(t: Transport) -> None:
        hook = stage.hook(key, t.host)
        if not _remote(hook):
            return
        try:
            run_on_host(t, s.layout, stage, hook, rid)
        except StepError as exc:
            raise StepError(f"{t.host}: {key} failed: {str(exc).removeprefix(f'{t.host}: ')}") from None
    return one


def run_outcome_hooks(s, r, words: list[str], error: str) -> None:
    """on_success (error "") or on_failure of each stage a task on doit's command line names (deploy:test,
    build:test, verify:test ...), once, at the end of the run. A failing one is reported on stderr and
    changes no result."""
    key, result = ("on_failure", "failed") if error else ("on_success", "ok")
    stages: list[Stage] = []
    for word in words:
        kind, _, name = word.partition(":")
        stage = s.config.stages.get(name)
        if kind in OUTCOME_KINDS and stage is not None and stage.has_hook(key) and stage not in stages:
            stages.append(stage)
    for stage in stages:
        what, release = command_of(s.argv, stage, stage.chain_task), r.known(stage)
        try:
            rids = None
            if any(_remote(stage.hook(key, h)) for h in stage.hosts):
                s.lock(stage.hosts, f"{key} of {stage.name}")
                rids = release.id if release else dict(zip(stage.hosts, stage_releases(s, stage, what)))
            run_hook(s, stage, key, rids, lambda: context(s, stage, release, what, result, error))
        except (StepError, CommandFailed) as exc:
            print(f"WARNING: {what}: {exc} (the result of {what} stands: {result})", file=sys.stderr, flush=True)


_SAY = threading.Lock()   # hosts' hooks print from the executor's threads: a line is never cut by another


def say(host, line: str) -> None:
    with _SAY:
        sys.stdout.write(f"   {host}: {line}\n")
        sys.stdout.flush()
