"""The SQL text of a migration as Django writes it (MariaDB/MySQL and sqlite): statements, identifiers and
column definitions, and the schema read from the copy (information_schema.COLUMNS, sqlite_master), all as
Column values that sqlcheck.py compares. Pure."""
from __future__ import annotations

import re
from dataclasses import dataclass

IDENT = r'(?:`(?:[^`]|``)+`|"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
CONSTRAINT_WORDS = {"NOT", "NULL", "PRIMARY", "UNIQUE", "DEFAULT", "CHECK", "REFERENCES", "CONSTRAINT", "COLLATE",
                    "GENERATED", "AUTO_INCREMENT", "AUTOINCREMENT", "COMMENT", "CHARACTER", "CHARSET", "ON"}

@dataclass(frozen=True)
class Column:
    type: str
    null: bool
    default: bool = False
    unique: bool = False


def unquote(ident: str) -> str:
    if ident[:1] in "`\"" and ident[-1:] == ident[:1]:
        q = ident[0]
        return ident[1:-1].replace(q + q, q)
    return ident


def split_statements(text: str) -> list[str]:
    """SQL text (sqlmigrate's output, or one collected statement) -> statements, comments and the
    BEGIN/COMMIT of a transaction dropped. Splits on ';' outside quotes."""
    out, cur, quote = [], [], ""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    for ch in "\n".join(lines):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch == ";":
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [s for s in out if s and s.upper() not in ("BEGIN", "COMMIT")]


def split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes."""
    parts, cur, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def parse_column_def(text: str) -> tuple[str, Column] | None:
    """'"name" varchar(40) NOT NULL UNIQUE' -> (name, Column); None for a table constraint."""
    m = re.match(rf"\s*({IDENT})\s*(.*)$", text, re.S)
    if not m or m.group(1).upper() in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "KEY", "INDEX"):
        return None
    words, rest = [], m.group(2)
    for w in re.findall(r"\([^)]*\)|'[^']*'|\S+", rest):
        if w.upper() in CONSTRAINT_WORDS:
            break
        words.append(w)
    upper = " " + re.sub(r"'[^']*'", "''", rest).upper() + " "
    col = Column(type=normal_type(" ".join(words)), null=" NOT NULL " not in upper and "PRIMARY KEY" not in upper,
                 default=" DEFAULT " in upper, unique=" UNIQUE" in upper or "PRIMARY KEY" in upper)
    return unquote(m.group(1)), col


def normal_type(t: str) -> str:
    """Django's spelling and information_schema's agree: integer = int(11), bool = tinyint(1), ..."""
    t = " ".join(t.lower().replace(" (", "(").split())
    t = re.sub(r"\b(tinyint|smallint|mediumint|int|integer|bigint)\(\d+\)", r"\1", t)
    t = re.sub(r"\binteger\b", "int", t)
    return {"bool": "tinyint(1)", "boolean": "tinyint(1)", "tinyint": "tinyint(1)"}.get(t, t)


def columns_from_mysql(rows) -> dict[str, dict[str, Column]]:
    """information_schema.COLUMNS rows (TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT,
    COLUMN_KEY) -> {table: {column: Column}}."""
    out: dict[str, dict[str, Column]] = {}
    for table, name, ctype, nullable, default, key in rows:
        out.setdefault(table, {})[name] = Column(normal_type(ctype), nullable == "YES", default is not None,
                                                 key in ("UNI", "PRI"))
    return out


def columns_from_sqlite(creates: dict[str, str]) -> dict[str, dict[str, Column]]:
    """{table: its CREATE TABLE statement from sqlite_master} -> {table: {column: Column}}."""
    out = {}
    for table, sql in creates.items():
        m = re.search(r"\((.*)\)\s*$", sql or "", re.S)
        defs = [parse_column_def(d) for d in split_top(m.group(1))] if m else []
        out[table] = dict(d for d in defs if d)
    return out
