"""What a command leaves for CI: DEPLOY_REPORT=<path> (a JSON summary of the run: command, stage, release,
each node with its status, seconds and hosts, the result and the one-line error), GITHUB_STEP_SUMMARY (the
same as Markdown, appended, with the rehearsal reports the run wrote) and the check of every such path
before anything runs. doit_tasks.py's reporter notes what each node did and calls these; no doit here.

The report holds names only (stages, hosts, tasks, releases) and the error line the operator saw, which
never carries a password."""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config
from .steps.links import release_of

if TYPE_CHECKING:   # imported as the run starts (start.py), before the task modules: no runtime import of these
    from .releases import Releases
    from .session import Session

# the variables naming a file the run writes: checked before anything runs
OUTPUTS = ("DEPLOY_REPORT", "DEPLOY_JUNIT_XML", "GITHUB_STEP_SUMMARY")
STATUSES = ("ran", "up to date", "failed", "not run")


def output_path(environ, name: str, base: Path) -> Path | None:
    """The file a variable names (relative to where doit was run), or None when it is unset or empty."""
    value = environ.get(name, "")
    return (base / value) if value else None


def check_outputs(environ, base: Path) -> str | None:
    """The one-line error for the first output variable whose file cannot be written there, or None."""
    for name in OUTPUTS:
        path = output_path(environ, name, base)
        if path is None:
            continue
        if path.is_dir():
            return f"{name}={environ[name]}: is a directory; name a file (e.g. {name}={environ[name]}/report)"
        if not path.parent.is_dir():
            return (f"{name}={environ[name]}: directory {path.parent} does not exist; create it or point {name} "
                    "at a file in an existing directory")
    return None


def run_order(tasks: dict, selected: list[str]) -> list[str]:
    """The nodes (tasks with actions, not hidden) the selected tasks run, dependencies first, as doit
    takes them. tasks: doit's {name: Task} (its task_dep, setup_tasks and actions are read)."""
    seen: set[str] = set()
    out: list[str] = []

    def visit(name: str) -> None:
        if name in seen or name not in tasks:
            return
        seen.add(name)
        for dep in [*tasks[name].task_dep, *tasks[name].setup_tasks]:
            visit(dep)
        out.append(name)
    for name in selected or []:
        visit(name)
    return [n for n in out if tasks[n].actions and not n.startswith("_")]


def named_stage(words: list[str]) -> str | None:
    """The stage a command line names, read before the config is (backup:<database> names none)."""
    return next((w.partition(":")[2] for w in words if ":" in w and not w.startswith("backup:")), None)


def command_stage(config: Config, words: list[str]):
    """The stage the command acts on: the first `<kind>:<stage>` naming one (backup:<database> names none)."""
    for word in words:
        kind, _, name = word.partition(":")
        if kind != "backup" and name in config.stages:
            return config.stages[name]
    return None


def node_hosts(config: Config, name: str) -> list[str]:
    """The hosts a node acts on: its stage's, a backup's backup host, every host for status, none for
    archive (built on this machine)."""
    kind, _, what = name.partition(":")
    if kind == "backup" and what in config.databases:
        db = config.databases[what]
        return [str(db.backup_host)] if db.backup_host else []
    if what in config.stages:
        return [str(h) for h in config.stages[what].hosts]
    if kind == "status":
        return list(dict.fromkeys(str(h) for st in config.stages.values() for h in st.hosts))
    return []


def run_release(session: Session, releases: Releases, stage, kind: str) -> str | None:
    """The release the command was about: for deploy/promote, the one the stage was getting; else the one
    its link pointed at when this run last saw it (after a rollback: the one rolled back to)."""
    if stage is None:
        return None
    rid = releases.known_id(stage)
    if rid or kind in ("deploy", "promote"):
        return rid
    seen = [session.known_links.last_seen(h, stage.link) for h in stage.hosts]
    rids = [release_of(target) for ok, target in seen if ok and release_of(target)]
    return Counter(rids).most_common(1)[0][0] if rids else None


def summarize(config: Config, session: Session, releases: Releases, words: list[str], order: list[str],
              done: dict[str, dict], error: str | None, started: float) -> dict:
    """The report of a run: order, the nodes it meant to run; done, {node: {"status", "seconds"}} of those
    it took up (status None: still under way when the run ended, i.e. interrupted)."""
    nodes = []
    for name in [*order, *(n for n in done if n not in order)]:
        state = done.get(name) or {"status": "not run", "seconds": None}
        if state["status"] is None:
            state = {**state, "status": "failed"}
            error = error or f"{name}: interrupted"
        nodes.append({"name": name, **state, "hosts": node_hosts(config, name)})
    stage = command_stage(config, words)
    kind = words[0].partition(":")[0] if words else ""
    return build_report(" ".join(words), stage.name if stage else None,
                        run_release(session, releases, stage, kind), nodes, error, started, time.time(),
                        [str(p) for p in session.rehearsal_reports], stage_roles(stage))


def stage_roles(stage) -> dict[str, list[str]]:
    """{role: its hosts} of the command's stage (`hosts` is role app; {} without a stage)."""
    return {r.name: [str(h) for h in r.hosts] for r in stage.roles} if stage is not None else {}


def build_report(command: str, stage: str | None, release: str | None, nodes: list[dict],
                 error: str | None, started: float, finished: float, rehearsals: list[str] = (),
                 roles: dict[str, list[str]] | None = None) -> dict:
    """nodes: [{"name", "status" (one of STATUSES), "seconds", "hosts"}], in the order the run took them;
    roles: {role: hosts} of the stage."""
    return {"command": command, "stage": stage, "release": release, "roles": dict(roles or {}),
            "result": "failed" if error else "ok", "error": error,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(finished - started, 3), "nodes": nodes, "rehearsal_reports": list(rehearsals)}


def markdown(report: dict) -> str:
    """The report as GitHub-flavoured Markdown (a step summary)."""
    mark = "✅" if report["result"] == "ok" else "❌"
    out = [f"### {mark} `doit {report['command']}`: {report['result']}", ""]
    facts = [f"stage `{report['stage']}`" if report["stage"] else "",
             f"release `{report['release']}`" if report["release"] else "", f"{report['seconds']:.1f} s"]
    line = ", ".join(f for f in facts if f)
    out += [line[:1].upper() + line[1:] + ".", ""]
    if report.get("error"):
        out += ["```", report["error"], "```", ""]
    if len(report.get("roles") or {}) > 1:   # a stage of one role (hosts alone): its hosts are the nodes'
        out += ["Roles: " + "; ".join(f"`{r}`: " + ", ".join(f"`{h}`" for h in hs)
                                      for r, hs in report["roles"].items()) + ".", ""]
    if report["nodes"]:
        out += ["| node | status | seconds | hosts |", "|---|---|---|---|"]
        out += [f"| `{n['name']}` | {n['status']} | {_seconds(n['seconds'])} | "
                + (", ".join(f"`{h}`" for h in n["hosts"]) or "this machine") + " |" for n in report["nodes"]]
        out.append("")
    return "\n".join(out) + "\n"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def write_atomic(path: Path, text: str) -> None:
    """The whole file or none: written beside it, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def emit(environ, base: Path, report: dict, rehearsal_markdown: list[str] = ()) -> list[str]:
    """Write the report where DEPLOY_REPORT says, append it to GITHUB_STEP_SUMMARY (with the rehearsal
    reports' Markdown); returns a line for each file that could not be written."""
    problems = []
    path = output_path(environ, "DEPLOY_REPORT", base)
    if path is not None:
        try:
            write_atomic(path, json.dumps(report, indent=1) + "\n")
        except OSError as exc:
            problems.append(f"DEPLOY_REPORT={environ['DEPLOY_REPORT']}: not written: {exc.strerror or exc}")
    path = output_path(environ, "GITHUB_STEP_SUMMARY", base)
    if path is not None:
        try:
            with open(path, "a") as f:   # each part ends in a blank line: the next one starts a block
                f.write("".join(part.rstrip("\n") + "\n\n" for part in [markdown(report), *rehearsal_markdown]))
        except OSError as exc:
            problems.append(f"GITHUB_STEP_SUMMARY={environ['GITHUB_STEP_SUMMARY']}: not written: "
                            f"{exc.strerror or exc}")
    return problems
