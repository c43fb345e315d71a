"""plan:<stage>'s pure parts (plan.py does the reading): the read-only migration command and its parser, each
node's verdict from what was read, and the text. Tested on plain inputs (tests/unit/test_plan.py)."""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Sequence

from .config import Database, Host
from .steps.links import release_of

DJANGO_PROGRAMS = ("manage.py", "django-admin", "django")
KEPT_OPTIONS = ("--settings", "--pythonpath", "--database")   # migrate's options that showmigrations takes too
PLAN_LINE = re.compile(r"^\[([ X])\]\s+(\S+)")


@dataclass(frozen=True)
class Step:
    """One node's answer: done True (up to date), False (it would act), None (not checked)."""
    node: str
    done: bool | None
    says: str
    details: tuple[str, ...] = ()


def showmigrations_argv(migrate_argv: Sequence[str]) -> list[str] | None:
    """`<python> manage.py showmigrations --plan` for a Django migrate_command (a read: it applies nothing
    and creates no table), with the options both take; None for any other command."""
    argv = list(migrate_argv)
    at = next((i for i, a in enumerate(argv) if posixpath.basename(a) in DJANGO_PROGRAMS), None)
    if at is None or "migrate" not in argv[at + 1:]:
        return None
    kept = [a for a in argv[at + 1:] if a.startswith(tuple(o + "=" for o in KEPT_OPTIONS))]
    return [*argv[:at + 1], "showmigrations", "--plan", *kept]


def parse_showmigrations(text: str) -> tuple[list[str], list[str]]:
    """showmigrations --plan's output -> (applied, pending), each in plan order."""
    applied, pending = [], []
    for line in text.splitlines():
        m = PLAN_LINE.match(line.strip())
        if m:
            (applied if m.group(1) == "X" else pending).append(m.group(2))
    return applied, pending


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def backup_step(node: str, db: Database, host: Host, newest: dict | None, now: float, max_age: int) -> Step:
    if not newest:
        return Step(node, False, f"would back up {db.name} on {host}: it has no verified backup")
    age = now - newest["epoch"]
    if age < max_age:
        return Step(node, True, f"up to date: {newest.get('name')} is {age_text(age)} old "
                                f"(backup_max_age {age_text(max_age)})")
    return Step(node, False, f"would back up {db.name} on {host}: the newest verified one, {newest.get('name')}, is "
                             f"{age_text(age)} old (backup_max_age {age_text(max_age)})")


def hosts_text(hosts: Sequence[Host], labels: dict[Host, str], every: int) -> str:
    return "every host" if len(hosts) == every and every > 1 else ", ".join(labels[h] for h in hosts)


def switch_step(node: str, link: str, rid: str, states: dict[Host, dict], labels: dict[Host, str]) -> Step:
    """From each host's switch state (switch_state.parse_state): up to date as switch_done decides, else
    which host's link goes from which release to rid, and what else the switch would finish."""
    moves, notes = [], []
    for h, st in states.items():
        now = release_of(st["link"])
        if now != rid:
            moves.append(f"{labels[h]} {now or '(none)'} -> {rid}")
        elif not st["env"] or st["env_live"] != st["env"]:
            moves.append(f"{labels[h]} {rid} (the same release, its new env version goes live)")
        if st["intent"] is not None:
            notes.append(f"{labels[h]} holds an unfinished switch to {st['intent'].get('release', '?')}: the "
                         "switch finishes or undoes it first")
        if st["unsafe"]:
            notes.append(f"{labels[h]}: {st['unsafe'][0]} is a symlink: the switch would refuse")
    if not moves and not notes:
        return Step(node, True, f"up to date: {link} -> {rid} on every host")
    return Step(node, False, f"would switch {link}: " + ("; ".join(moves) or "(no link moves)"), tuple(notes))


def format_plan(title: str, steps: Sequence[Step]) -> str:
    width = max([len(s.node) for s in steps] + [0]) + 2
    lines = [title]
    for s in steps:
        says = s.says if s.done is not None or s.says.startswith("not checked") else f"not checked: {s.says}"
        lines.append(f"  {s.node.ljust(width)}{says}")
        lines += [f"  {' ' * width}  {d}" for ln in s.details for d in ln.splitlines()]
    acting = sum(1 for s in steps if s.done is False)
    unknown = sum(1 for s in steps if s.done is None)
    lines.append(f"{acting} node(s) would act, {len(steps) - acting - unknown} up to date"
                 + (f", {unknown} not checked" if unknown else "") + "; nothing was changed")
    return "\n".join(lines)


def host_failure(label: str, host: Host, exc: Exception) -> str:
    """`<label>: what failed`, the host named once (a transport's error names it itself)."""
    text = failed_text(exc)
    return f"{label}: {text[len(str(host)) + 2:] if text.startswith(f'{host}: ') else text}"


def failed_text(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
