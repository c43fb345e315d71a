"""docs/configuration.md, written from the key tables of the code: every section and key of stages.ini with
its default, its doc and the parser that reads it. `scripts/gen-config-docs` writes the file;
tests/unit/test_docs.py fails when the file is not what render() gives.

The tables are Key(parse, default, doc) dicts (config/reader.py Key); this reads them and nothing else."""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

from doit_stages.config import DURATION_UNITS
from doit_stages.config import appenv as config_appenv
from doit_stages.config import database as config_database
from doit_stages.config import hooks as config_hooks
from doit_stages.config import project as config_project
from doit_stages.config import roles as config_roles
from doit_stages.config import stage as config_stage

OUT = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


class Placeholders(dict):
    """What a computed default sees of the other keys: `<name>` for the value of `name`."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


class AnySection:
    values = scope = Placeholders()


def default_text(spec) -> str:
    default = spec.default
    if isinstance(default, config_stage.FromProject):
        return f"[project] {default.key}"
    if default is config_hooks.inherited:
        return ""
    return default(AnySection) if callable(default) else default


def parser_text(parse) -> str:
    """`whole(1)`, `choice(auto, git, hg)`, `duration`: the parser and the arguments its factory was given."""
    name, _, inner = parse.__qualname__.partition(".<locals>")
    if not inner:
        return name
    args = []
    for value in inspect.getclosurevars(parse).nonlocals.values():
        if callable(value) and value.__name__ != "<lambda>":
            args.append(value.__name__)
        elif isinstance(value, tuple):
            args.append(", ".join(map(str, value)))
        elif isinstance(value, (int, str)) and " " not in str(value):
            args.append(str(value))
    return f"{name}({', '.join(args)})" if args else name


def cell(text: str, code: bool = False) -> str:
    """A table cell's text: `|` escaped; outside code, `<` too (`<stage>` is no HTML tag)."""
    text = text.replace("|", "\\|")
    if code:
        return f"`{text}`" if text else ""
    return text.replace("<", "&lt;")


def table(keys: dict, module) -> list[str]:
    rows = ["| key | default | what it is | parsed by |", "| --- | --- | --- | --- |"]
    for key, spec in keys.items():
        rows.append(f"| `{key}` | {cell(default_text(spec), code=True)} | {cell(spec.doc)} | "
                    f"{cell(parser_text(spec.parse), code=True)} |")
    return [f"From `{module.__name__}`, in the order they are read (a parser sees the keys above it).", "",
            *rows, ""]


def render() -> str:
    units = ", ".join(u for u in DURATION_UNITS if u)
    refused = [f"- `{key}`: refused: {why}." for key, why in config_database.REFUSED.items()]
    lines = [
        "# Configuration reference: every key of stages.ini",
        "",
        "Every section and key of `stages.ini`, with its default, what it holds and the parser that reads it.",
        "",
        "Written from the key tables of the code by `scripts/gen-config-docs`: do not edit it by hand",
        "(`tests/unit/test_docs.py` fails when it differs). How the file is read, its rules and errors:",
        "[stages-ini.md](stages-ini.md); what a value may hold: [security.md](security.md). A section or key",
        "not listed here is refused at load, in one line.",
        "",
        "## `[project]`",
        "",
        *table(config_project.PROJECT, config_project),
        "## `[stage:<name>]`",
        "",
        "One section per stage. A default `[project] <key>` is the project's value of that key.",
        "",
        *table(config_stage.STAGE, config_stage),
        "### Roles within a stage",
        "",
        "`hosts` is the role `app`; `hosts.<role>` adds one. A `<key>.<role>` overrides the stage's key for that",
        "role's hosts ([stages-ini.md](stages-ini.md#roles-within-a-stage)).",
        "",
        *table(config_roles.ROLE_KEYS, config_roles),
        "## Hooks: keys of `[project]` and `[stage:<name>]`",
        "",
        "Each is a command run on every host of the stage (in the release, with its env, where the release is",
        "built for the stage; else in deploy_root), or, prefixed `local:`, once on this machine in the directory",
        "of `stages.ini` with `DEPLOY_*` variables. A stage takes the project's hook of a key unless it writes",
        "the key (empty: none). No default. `<key>.<role>`: that role's hosts' hook instead (empty: none).",
        "How they run: [hooks.md](hooks.md).",
        "",
        *table(config_hooks.HOOKS, config_hooks),
        "## `[database:<name>]`",
        "",
        "One section per database: the keys of every engine, then those of its `engine`; a key of another",
        "engine is refused.",
        "",
        *refused,
        "",
        "### Every engine",
        "",
        *table(config_database.DATABASE, config_database),
        "### engine = mysql",
        "",
        *table(config_database.MYSQL, config_database),
        "### engine = postgresql",
        "",
        "`password_env` or `passfile`, exactly one. `port` defaults to 5432 here (not 3306).",
        "",
        *table(config_database.POSTGRESQL, config_database),
        "### engine = sqlite",
        "",
        *table(config_database.SQLITE, config_database),
        "## `[env]`, `[secrets]`, `[env:<stage>]`, `[secrets:<stage>]`",
        "",
        "The app's own variables in every env file (`[env]`, `[secrets]`) or one stage's (`[env:<stage>]`,",
        "`[secrets:<stage>]`, over the others). Their keys are the variables' names: letters, digits, `_`, not",
        "starting with a digit; refused: " + ", ".join(f"`{n}`" for n in config_appenv.TOOL_NAMES)
        + " (the tool's own).",
        "`[env]` values are literal; a `[secrets]` value is its source, read on the deploying machine by the",
        "commands that write an env file. No value may hold a line break or a NUL.",
        "",
        "| source | the value |",
        "| --- | --- |",
        "| `env:VAR` | the environment variable VAR of doit |",
        "| `file:PATH` | the file's content without its last line end (`~` expanded; relative to this file; "
        "refused when world-readable) |",
        f"| `command:ARGV` | the command's stdout without its last line end (split like `command`, stdin "
        f"`/dev/null`, at most {config_appenv.COMMAND_TIMEOUT} s; run in the directory of this file) |",
        "",
        "More: [app-environment.md](app-environment.md#the-apps-own-variables-env-and-secrets).",
        "",
        "## How a value is parsed",
        "",
        "| parser | accepts |",
        "| --- | --- |",
        "| `boolean` | `yes`, `no`, `true`, `false`, `on`, `off`, `1`, `0` (any case) |",
        f"| `duration` | a whole number with an optional unit ({units}; none: seconds), e.g. `30s`, `24h` |",
        "| `whole(n)` | a whole number, at least n |",
        "| `choice(...)` | one of the words listed |",
        "| `hook` | `local: ` and a command, or a command; the command as `command` |",
        "| `command` | split into an argv by POSIX shell rules (`shlex`) at load, run with no shell; a ` ;` "
        "inside quotes is not a comment ([stages-ini.md](stages-ini.md#command-keys)) |",
        "| `headers` | `Name: value, Name: value` ([stages-ini.md](stages-ini.md#the-health-check)) |",
        "| `checked(rule)` | what the rule allows before the value reaches an argv, a host path or SQL "
        "([security.md](security.md)) |",
        "| others | the key's own parser, in the module named above the table |",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
