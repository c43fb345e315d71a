"""The state of a stage's switch on a host, read by ONE command (STATE) and parsed (parse_state): the link, a
directory on the way to it that is a symlink, the release's readiness for the stage and its env versions,
and any intent a switch left; and from the states of all hosts, the way back of each (plan_hosts)."""
from __future__ import annotations

from ..config import Stage
from ..hostside import script
from ..runtime.common import json_or_none
from ..transport import Transport, call_key
from .environment import env_token
from .links import release_of

# $1 deploy_root, $2 the link (relative to it), $3 the intent file, $4 the link's target when this run knows
# it ("=<target>", or "-": no link; then no readlink runs), "" to read it (readlink runs only for a symlink);
# for a switch to a release also $5 its dir, $6 its ready marker, $7 the stage's built marker, $8 its env
# dir, $9 the stage, then the shared paths that must be linked into it. Prints "unsafe <dir> <target>" when
# a directory on the way to the link is a symlink, the link's target, "notlink" when something else is in
# its place, the readiness lines (ready 0|1, built <id>, env <version recorded> <version of <stage>.env:
# "?" when no version is it>, missing <path>...) and, after a separator, the intent if any. Builtins but
# readlink (and cat for an intent).
STATE = script("switch_state.sh")
KEYS = ("link", "ready", "built", "env", "missing", "unsafe", "notlink")


def parse_state(text: str) -> dict:
    """STATE's output -> {"link": target or None, "intent": dict or None, "ready": bool, "built": id, "env":
    version recorded, "env_live": the version <stage>.env is ("?": none is, "": no such file), "missing":
    [paths], "unsafe": [dir, its target] or None, "notlink": bool}."""
    head, _, intent = text.partition("--intent--\n")
    facts: dict = {"link": None, "ready": False, "built": "", "env": "", "env_live": "", "missing": [],
                   "unsafe": None, "notlink": False, "intent": None}
    for line in head.splitlines():
        key, _, value = line.partition(" ")
        if key == "link":
            facts["link"] = value.strip() or None
        elif key == "ready":
            facts["ready"] = value == "1"
        elif key == "built":
            facts["built"] = value.strip()
        elif key == "env":
            recorded, _, live = value.partition(" ")
            facts["env"], facts["env_live"] = recorded.strip(), live.strip()
        elif key == "missing":
            facts["missing"].append(value)
        elif key == "unsafe" and facts["unsafe"] is None:
            path, _, target = value.partition(" ")
            facts["unsafe"] = [path, target]
        elif key == "notlink":
            facts["notlink"] = True
    parsed = json_or_none(intent)
    facts["intent"] = parsed if isinstance(parsed, dict) else None
    return facts


def state_argv(session, stage: Stage, rid: str | None = None, target: str | None = "") -> list[str]:
    """STATE's argv. target: the link's target when this run knows it ("=<target>"; None: no link), "" to
    have it read (the form a read sent ahead uses, and the key its kept answer is found by)."""
    layout = session.layout
    argv = ["sh", "-c", STATE, "sh", layout.root, stage.link, layout.intent(stage.name),
            "" if target == "" else ("-" if target is None else "=" + target)]
    if rid:
        project = session.config.project
        argv += [layout.release(rid), layout.ready(rid), layout.built_marker(stage.name),
                 layout.join("releases", rid, ".deploy-env"), stage.name, *project.shared_dirs, *project.shared_files]
    return argv


def read_state(t: Transport, session, stage: Stage, rid: str | None = None) -> dict:
    """The stage's link and intent on a host; with rid, also whether that release can be switched to. The
    answer of the same read kept since this run's last command to the host is taken (the check's, for the
    switch's action, or one sent ahead: Transport.keep)."""
    asked = state_argv(session, stage, rid)
    kept = t.kept(call_key(asked))
    if kept is not None and kept[0] == 0:
        out = kept[1]
    else:
        known, target = session.known_links.get(t.host, stage.link)
        out = t.run(state_argv(session, stage, rid, target) if known else asked)
        t.keep(call_key(asked), (0, out, ""))
    facts = parse_state(out)
    head = out.partition("--intent--\n")[0].splitlines()
    if not facts["unsafe"] and all(line.partition(" ")[0] in KEYS for line in head):
        # (a target with a newline would show in another line)
        session.known_links.remember(t.host, stage.link, facts["link"])
    return facts


def same_switch(intent: dict | None, rid: str, env: str) -> bool:
    """The intent is of a switch to this release and env version (an intent of an older version of the
    tool names no env: the same)."""
    return bool(intent) and intent.get("release") == rid and intent.get("env", env) == env


def plan_hosts(facts: dict, rid: str) -> dict:
    """{host: its state} -> {host: {"previous": the link to put it back on, "env": the version to make live,
    "env_before": the version the release's env file was ("" for none), "keep": a new name to keep an env
    file that no version names yet, or ""}}. A half-done switch of this very release (and env) goes on
    from where it was: an intent knows its host's way back, and a host that finished its part before the
    run died (intent removed, link on rid) had the one the intents name, not what it runs now."""
    left = [f["intent"] for f in facts.values() if same_switch(f["intent"], rid, f.get("env", ""))]
    plan = {}
    for h, f in facts.items():
        env, live = f.get("env", ""), f.get("env_live", "")
        if same_switch(f["intent"], rid, env):
            previous, before = f["intent"].get("previous"), f["intent"].get("env_before", live)
        elif left and not f["intent"] and release_of(f["link"]) == rid and live == env:
            previous, before = left[0].get("previous"), left[0].get("env_before", live)
        else:
            previous, before = f["link"], live
        keep = env_token() if before == "?" else ""
        plan[h] = {"previous": previous, "env": env, "env_before": keep or before or "", "keep": keep}
    return plan


def previous_links(facts: dict, rid: str) -> dict:
    """{host: its state} -> {host: the link to put it back on} (plan_hosts)."""
    return {h: p["previous"] for h, p in plan_hosts(facts, rid).items()}
