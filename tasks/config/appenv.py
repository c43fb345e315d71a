"""[env], [env:<stage>], [secrets], [secrets:<stage>]: the app's own variables in its env file.

[env] values are literal; a [secrets] value names where the deploying machine reads the value: env:VAR,
file:PATH, command:ARGV. read_app_env checks the names and sources at load (no file read, no command run);
read_secrets reads the values, once per run, for the commands that write an env file (doit list and doit
status never do), before anything touches a host. A value goes into the release's 0600 env file only:
an error names the secret (its section and key), never its value.
"""
from __future__ import annotations

import os
import re
import stat
from typing import Callable, Iterable

from .model import Config, ConfigError, Secret, Stage, split_command
from .reader import Ini

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# what the tool writes into every env file itself (steps/environment.py env_values)
TOOL_NAMES = ("STAGE", "STAGE_DIR", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DATABASE_OPTION_FILE")
KINDS = ("env", "file", "command")
COMMAND_TIMEOUT = 120   # seconds a command: source may take (a password manager asking for its passphrase)
SECTIONS = ("env", "secrets")

# run(argv, cwd, timeout) -> (exit code, stdout bytes, stderr bytes): localcmd.call, or a fake in tests
Runner = Callable[..., tuple]


def check_section(ini: Ini, section: str, stage_names: Iterable[str]) -> bool:
    """Is it one of these sections ([env:<stage>] of a stage that exists; else one line saying so)?"""
    kind, colon, name = section.partition(":")
    if kind not in SECTIONS:
        return False
    if colon and name not in stage_names:
        ini.fail(section, None, f"there is no [stage:{name}]; name a stage, or use [{kind}] for every stage")
    return True


def value_problem(value: str) -> str | None:
    """What keeps a value out of a KEY='value' line that sh, systemd and python-dotenv all read alike."""
    if "\0" in value:
        return "holds a NUL byte, which no environment variable can hold"
    if "\n" in value or "\r" in value:
        return ("holds a line break: systemd's EnvironmentFile reads one line a variable; put it on one line "
                "(e.g. base64 or \\n escapes your app decodes)")
    return None


def check_name(ini: Ini, section: str, key: str) -> None:
    if not NAME_RE.match(key):
        ini.fail(section, key, "is no variable name; use letters, digits and '_', not starting with a digit")
    if key in TOOL_NAMES:
        ini.fail(section, key, f"is set by doit-stages itself (it sets {', '.join(TOOL_NAMES)}); use another name")


def read_env_section(ini: Ini, section: str) -> dict[str, str]:
    out = {}
    for key in ini.cp[section]:
        check_name(ini, section, key)
        value = ini.get(section, key)
        problem = value_problem(value)
        if problem:
            ini.fail(section, key, problem)
        out[key] = value
    return out


def parse_source(ini: Ini, section: str, key: str) -> Secret:
    text = ini.get(section, key, shell=True)
    where = ini.message(section, key, "").rstrip(": ")
    kind, sep, rest = text.partition(":")
    rest = rest.strip()
    if not sep or kind not in KINDS:
        ini.fail(section, key, "names no source; write env:VARIABLE, file:PATH or command:COMMAND "
                               "(a literal value goes in [env])")
    if not rest:
        what = {"env": "VARIABLE", "file": "PATH"}.get(kind, "COMMAND")
        ini.fail(section, key, f"{kind}: names nothing; write {kind}:{what}")
    if kind == "env":
        if not NAME_RE.match(rest):
            ini.fail(section, key, f"env:{rest} is no environment variable name")
        return Secret(key, kind, rest, where)
    if kind == "file":
        problem = value_problem(rest)
        if problem:
            ini.fail(section, key, f"the path {problem}")
        return Secret(key, kind, rest, where, path=ini.relpath(rest))
    try:
        argv = split_command(rest)
    except ValueError as exc:
        ini.fail(section, key, f"command: {exc}")
    return Secret(key, kind, rest, where, argv=argv)


def read_secrets_section(ini: Ini, section: str) -> dict[str, Secret]:
    out = {}
    for key in ini.cp[section]:
        check_name(ini, section, key)
        out[key] = parse_source(ini, section, key)
    return out


def read_app_env(ini: Ini, stage_names: Iterable[str]) -> dict[str, tuple[tuple, tuple]]:
    """stage -> (env pairs, secrets): [env] and [secrets] with the stage's own sections over them (a stage's
    own key wins, of either kind). One name in [env] and [secrets] of the same level is refused."""
    read = {s: (read_env_section(ini, s) if s.startswith("env") else read_secrets_section(ini, s))
            for s in ini.cp.sections() if s.partition(":")[0] in SECTIONS}
    for scope in ["", *(f":{n}" for n in stage_names)]:
        both = set(read.get("env" + scope, {})) & set(read.get("secrets" + scope, {}))
        if both:
            key = sorted(both)[0]
            ini.fail("secrets" + scope, key, f"is in [env{scope}] too; keep one of them")
    out = {}
    for name in stage_names:
        env = dict(read.get("env", {}))
        secrets = dict(read.get("secrets", {}))
        for key in read.get(f"env:{name}", {}):
            secrets.pop(key, None)
        for key in read.get(f"secrets:{name}", {}):
            env.pop(key, None)
        env.update(read.get(f"env:{name}", {}))
        secrets.update(read.get(f"secrets:{name}", {}))
        out[name] = (tuple(env.items()), tuple(secrets.values()))
    return out


# -- reading the values (once per run) -------------------------------------------------------------------
def read_secret(secret: Secret, environ, run: Runner, cwd: str) -> str:
    """The secret's value; ConfigError (one line naming the secret, never a value) when it cannot be read."""
    if secret.kind == "env":
        if secret.source not in environ:
            raise ConfigError(f"{secret.where}: environment variable {secret.source} is not set; export it "
                              "before running doit")
        value = environ[secret.source]
    elif secret.kind == "file":
        value = read_file(secret)
    else:
        value = run_command(secret, run, cwd)
    if value == "":
        raise ConfigError(f"{secret.where}: {secret.kind}:{secret.source} gave an empty value (a CI secret that "
                          "is not set arrives as an empty variable); set it, or move the key to [env]")
    problem = value_problem(value)
    if problem:
        raise ConfigError(f"{secret.where}: the value of {secret.kind}:{secret.source} {problem}")
    return value


def read_file(secret: Secret) -> str:
    path = str(secret.path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{secret.where}: {path} is not a file")
        if st.st_mode & stat.S_IROTH:
            raise ConfigError(f"{secret.where}: {path} is readable by every user of this machine (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}); chmod o-rwx {path} (better: chmod 600)")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"{secret.where}: cannot read {path}: {exc.strerror}") from None
    return decode(secret, strip_newline(data), f"the file {path}")


def run_command(secret: Secret, run: Runner, cwd: str) -> str:
    code, out, err = run(secret.argv, cwd=cwd, timeout=COMMAND_TIMEOUT)
    if code != 0:
        # only stderr is quoted: stdout is where a secret would be
        lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        raise ConfigError(f"{secret.where}: command:{secret.argv[0]} failed (exit {code})"
                          + (f": {lines[-1]}" if lines else ""))
    return decode(secret, strip_newline(out), f"the output of command:{secret.argv[0]}")


def strip_newline(data: bytes) -> bytes:
    """Without the one line end that a file or `echo` ends with (\\n or \\r\\n)."""
    return data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data


def decode(secret: Secret, data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{secret.where}: {what} is not UTF-8 text; store the value as text "
                          "(e.g. base64 your app decodes)") from None


def read_secrets(config: Config, stages: Iterable[Stage], run: Runner, environ=None) -> None:
    """Reads the secrets of these stages into the config, each source once, the first failure a
    ConfigError. Commands run in the directory of stages.ini, with no terminal."""
    environ = os.environ if environ is None else environ
    memo: dict[tuple, str] = {}
    for stage in stages:
        if not stage.secrets or stage.name in config.secret_values_read:
            continue
        values = {}
        for secret in stage.secrets:
            key = (secret.kind, secret.source, str(secret.path))
            if key not in memo:
                memo[key] = read_secret(secret, environ, run, str(config.workdir))
            values[secret.name] = memo[key]
        config.secret_values_read[stage.name] = values
