"""Reading stages.ini: the file (configparser plus the line of every key) and one section read by its table.

A section kind's table maps each key it accepts to Key(parse, default, doc). Section.read goes through the
table in order: the text as written (or the default, when the key is absent) goes to `parse`, which returns
the value or raises Problem; the first Problem becomes a one-line ConfigError naming the file's line, the
section and the key. A parser sees the keys read before it (`sec.values`) and what the caller gave the
section (`sec.scope`: the project, the databases, the stage's name, ...). The generic parsers are below.

Inline comments start with ` ;` (whitespace, then a semicolon). In a command key (Key.shell) only a ` ;`
outside shell quotes does: `reload_command = sh -c 'kill -HUP 1 ; exec app'` keeps its whole text.
"""
from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn

from .model import ConfigError, Host, split_command
from .values import parse_duration, parse_headers, parse_host

# a section header up to its first ']' (configparser's own runs to the last one, which a comment may hold)
SECTION_HEADER = re.compile(r"\[(?P<header>[^\]]+)\]")


class Problem(ValueError):
    """What is wrong with a value; `key` names another key of the section when the mistake shows there."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Key:
    parse: Callable[[str, "Section"], Any]          # (text as written, the section) -> the value
    default: str | Callable[["Section"], str] = ""  # the text when the key is absent
    doc: str = ""
    field: str = ""                                  # the dataclass field, when not named like the key
    shell: bool = False                              # a command: a ' ;' inside shell quotes is no comment


class Ini:
    """The file: its sections and keys, where each key is written, and the one way to fail."""

    def __init__(self, path: Path, text: str, environ):
        self.path, self.environ = path, environ
        self.lines = _key_lines(text)
        # inline comments are cut by get(), which knows whether the key is a command (shell quotes)
        self.cp = configparser.ConfigParser(inline_comment_prefixes=None, comment_prefixes=("#", ";"),
                                            interpolation=None, default_section="\0none")
        self.cp.SECTCRE = SECTION_HEADER   # `[stage:test]  ; a [comment]` is [stage:test]
        self.cp.optionxform = str  # keys are case-sensitive, as in docs/configuration.md
        try:
            self.cp.read_string(text, source=str(path))
        except configparser.Error as exc:
            raise ConfigError(f"{path.name}: {' '.join(str(exc).split())}; fix the syntax") from None

    def fail(self, section: str, key: str | None, msg: str) -> NoReturn:
        raise ConfigError(self.message(section, key, msg))

    def message(self, section: str, key: str | None, msg: str) -> str:
        """`stages.ini:<line>: [section] key: msg`, the one line of every ConfigError."""
        line = self.lines.get((section, key)) or self.lines.get((section, None))
        where = f"{self.path.name}:{line}" if line else self.path.name
        what = f"[{section}] {key}" if key else f"[{section}]"
        return f"{where}: {what}: {msg}"

    def get(self, section: str, key: str, default: str = "", shell: bool = False) -> str:
        """The value as written, without its inline comments (shell: those outside shell quotes only)."""
        value = self.cp.get(section, key, fallback=None)
        return default.strip() if value is None else strip_comments(value, shell).strip()

    def written(self, section: str, key: str) -> bool:
        return self.cp.has_option(section, key)

    def check_keys(self, section: str, allowed, refused: dict[str, str] | None = None) -> None:
        """Every key of the section, in file order: a refused one says why, an unknown one lists the known."""
        for key in self.cp[section]:
            if refused and key in refused:
                self.fail(section, key, refused[key])
            if key not in allowed:
                self.fail(section, key, f"unknown key; known keys: {', '.join(sorted(allowed))}")

    def relpath(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.path.parent / p).resolve()


class Section:
    """One section being read by its table: the values read so far and what the caller put in scope."""

    def __init__(self, ini: Ini, name: str, table: dict[str, Key], values: dict | None = None, **scope):
        self.ini, self.name, self.table, self.scope = ini, name, table, scope
        self.values: dict[str, Any] = dict(values or {})
        self.key = ""    # the key being read

    @property
    def default(self) -> str:
        """The default text of the key being read."""
        default = self.table[self.key].default
        return default(self) if callable(default) else default

    def written(self, key: str) -> bool:
        return self.ini.written(self.name, key)

    def read(self) -> dict[str, Any]:
        """Every key of the table not read yet, in order; returns the dataclass fields of all of them."""
        for key, spec in self.table.items():
            if key in self.values:
                continue
            self.key = key
            try:
                self.values[key] = spec.parse(self.ini.get(self.name, key, self.default, spec.shell), self)
            except Problem as problem:
                self.ini.fail(self.name, problem.key or key, str(problem))
        return {spec.field or key: self.values[key] for key, spec in self.table.items()}


# -- the generic parsers ---------------------------------------------------------------------------------
def text(value: str, sec: Section) -> str:
    return value


def optional(value: str, sec: Section) -> str | None:
    return value or None


def checked(rule: Callable[[str], str | None]):
    """A value a rules.py function accepts (None: fine, else the reason); an empty value passes."""
    def parse(value: str, sec: Section) -> str:
        problem = rule(value) if value else None
        if problem:
            raise Problem(problem)
        return value
    return parse


def choice(options: tuple[str, ...], why: str):
    def parse(value: str, sec: Section) -> str:
        if value not in options:
            raise Problem(f"{value!r} {why}")
        return value
    return parse


def whole(minimum: int):
    def parse(value: str, sec: Section) -> int:
        if not re.fullmatch(r"\d+", value) or int(value) < minimum:
            raise Problem(f"{value!r} is not a whole number >= {minimum}; write e.g. {sec.default}")
        return int(value)
    return parse


def duration(value: str, sec: Section) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise Problem(str(exc)) from None


def timeout(value: str, sec: Section) -> int:
    """A duration that bounds a wait: at least one second (0 would fail every wait at once)."""
    seconds = duration(value, sec)
    if seconds < 1:
        raise Problem(f"{value!r} is no time to wait; write at least 1s, e.g. {sec.default}")
    return seconds


def host(spec: str) -> Host:
    """One host of a stage's `hosts` or a database's `backup_host`."""
    try:
        return parse_host(spec)
    except ValueError as exc:
        raise Problem(f"{exc}; write 'local' or ssh://[user@]host[:port]") from None


def command(value: str, sec: Section) -> str:
    """A command key: the text as written (split into its argv when the dataclass is built)."""
    try:
        split_command(value)
    except ValueError as exc:
        raise Problem(str(exc)) from None
    return value


def headers(value: str, sec: Section) -> tuple[tuple[str, str], ...]:
    try:
        return parse_headers(value)
    except ValueError as exc:
        raise Problem(f"{exc}; write e.g. X-Forwarded-Proto: https, Host: blog.example.com") from None


def boolean(value: str, sec: Section) -> bool:
    value = value.lower()
    if value not in ("yes", "no", "true", "false", "1", "0", "on", "off"):
        raise Problem(f"{value!r} is not yes or no")
    return value in ("yes", "true", "1", "on")


def strip_comments(value: str, shell: bool = False) -> str:
    """value without its inline comments: from a ';' at the start of a line or after whitespace to the end
    of that line; with shell, only such a ';' outside '...' and "..." (and not escaped by a backslash)."""
    out, quote, i, after_space = [], "", 0, True
    while i < len(value):
        c = value[i]
        if not quote and c == ";" and after_space:
            end = value.find("\n", i)
            i = len(value) if end < 0 else end
            continue
        if shell and c == "\\" and quote != "'":   # an escaped character (a space too) is a plain one
            out.append(value[i:i + 2])
            i, after_space = i + 2, False
            continue
        if shell and c in "'\"" and quote in ("", c):
            quote = "" if quote else c
        out.append(c)
        i, after_space = i + 1, c.isspace()
    return "".join(out)


def _key_lines(text: str) -> dict:
    """(section, key) -> line number, for error messages; (section, None) -> the header's line."""
    lines, section = {}, None
    for no, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
            lines.setdefault((section, None), no)
            continue
        m = re.match(r"^([^\s=:;#][^=:]*?)\s*[=:]", line)
        if m and section:
            lines.setdefault((section, m.group(1).strip()), no)
    return lines
