"""The facts of a host that the built-in checks (infra-tests/test_stage.py) look at: what the stage's link,
the release, its env files and the shared dirs resolve to, with their modes and owners, read by ONE
command (FACTS) whose "key=value" lines parse_facts reads."""
from __future__ import annotations

import json
import re
import shlex

from ..config import Config, Stage
from ..hostside import script
from ..layout import Layout

# What the built-in checks read of a host, by ONE command. $1 link, $2 release dir, $3 shared/<stage>.env,
# $4 the release's ready marker, $5 its release json, $6 its own env file for the stage, then the shared
# dirs: one "key=value" a line. One program (stat) runs in the common case, two (realpath, stat) in
# others with every path there; the checks compare what realpath says of each path, and each answer is
# that, from realpath or from the kernel's own resolution (cd -P), never a guess from a link's text alone.
FACTS = script("facts.sh")


def facts_argv(layout: Layout, config: Config, stage: Stage, release: str) -> list[str]:
    return ["sh", "-c", FACTS, "sh", layout.link(stage.link), layout.release(release), layout.env_file(stage.name),
            layout.ready(release), layout.release_meta(release), layout.release_env(release, stage.name),
            *config.project.shared_dirs]


def parse_facts(text: str) -> dict[str, str]:
    """FACTS' output -> {key: value}."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def facts_command(layout: Layout, config: Config, stage: Stage, release: str) -> str:
    """The facts script as the built-in checks send it (host.check_output)."""
    return shlex.join(facts_argv(layout, config, stage, release))


# -- the interpreter a host builds release venvs with (build = pip | buildout) -----------------------------
# `python3` as the login's PATH finds it: the one UNPACK runs `python3 -m venv` with. It prints PEP 508's
# marker environment (what packaging's default_environment() says, computed the same way) plus the C
# library, as one JSON line: what the wheelhouse is resolved and keyed for. -I -S: no site, no user paths.
INTERPRETER = script("interpreter.py")
MARKER_KEYS = ("implementation_name", "implementation_version", "os_name", "platform_machine", "platform_release",
               "platform_system", "platform_version", "python_full_version", "platform_python_implementation",
               "python_version", "sys_platform")


def interpreter_argv() -> list[str]:
    return ["python3", "-I", "-S", "-c", INTERPRETER]


def parse_interpreter(text: str) -> dict[str, str] | None:
    """INTERPRETER's output -> its marker environment (every value a string), or None when it is not that."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        env = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if not isinstance(env, dict) or any(not isinstance(env.get(k), str) for k in (*MARKER_KEYS, "libc")):
        return None
    return {k: env[k] for k in (*MARKER_KEYS, "libc")}


def interpreter_key(env: dict[str, str]) -> str:
    """What a wheelhouse is built for, in a file name: cpython-3.11.2-linux-x86_64."""
    raw = f"{env['implementation_name']}-{env['python_full_version']}-{env['sys_platform']}-{env['platform_machine']}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


# The same key, printed by the host's python3 itself (build.UNPACK checks it before it makes a venv).
KEY_CODE = ('import platform, re, sys; print(re.sub(r"[^A-Za-z0-9._-]", "_", "%s-%s-%s-%s" % (sys.implementation.name, '
            'platform.python_version(), sys.platform, platform.machine())))')


def interpreter_text(env: dict[str, str]) -> str:
    """For people: CPython 3.11.2 (linux x86_64)."""
    return f"{env['platform_python_implementation']} {env['python_full_version']} " \
           f"({env['sys_platform']} {env['platform_machine']})"
