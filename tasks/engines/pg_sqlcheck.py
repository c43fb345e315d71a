"""What a migration's PostgreSQL SQL (Django's `sqlmigrate` for a postgresql database) does to production
while the live release serves it: the tables it touches and its unsafe operations, in the shape of
steps/migration/sqlcheck.py ({"tables": [...], "unsafe": [{"kind", "table", "column", "why"}]}). Pure.

Kinds: those of sqlcheck.py that apply here (drop_column, drop_table, rename_column, rename_table,
alter_type, not_null_without_default, add_unique) and PostgreSQL's locks (anchors: Squawk's rules,
strong_migrations, django-pg-zero-downtime-migrations): index_without_concurrently, add_foreign_key_validating,
set_not_null, volatile_default. A table created earlier in the pending plan is never unsafe: the live release
does not use it yet. The types and nullability before the plan come from the copy (COLUMNS).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# The copy's columns before the plan, as the probe reads them (here, or on the host): (table, column, type as
# format_type() writes it, nullable, has default), tables of the search path's schemas
from ..hostside.rehearsal_probe_pg import COLUMNS  # noqa: F401

IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
NAME = rf"(?:{IDENT}\.)?({IDENT})"          # a table, schema-qualified or not: group 1 is the table
WHY = {
    "drop_column": "the live release still selects and inserts it",
    "drop_table": "the live release still reads and writes it",
    "rename_column": "the live release still uses the old name",
    "rename_table": "the live release still uses the old name",
    "alter_type": "the live release reads and writes the old type, and the change rewrites the table under an "
                  "exclusive lock (reads and writes wait)",
    "not_null_without_default": "the live release inserts rows without it: they fail; give the field db_default= "
                                "(a default the database keeps), not only default= (Django drops that right after)",
    "add_unique": "existing or new duplicate values make the migration or the live release's writes fail, and the "
                  "unique index is built under a lock that blocks writes (CREATE UNIQUE INDEX CONCURRENTLY first)",
    "index_without_concurrently": "CREATE INDEX blocks every write to the table until the index is built; build it "
                                  "CONCURRENTLY (Django: AddIndexConcurrently in a migration with atomic = False)",
    "add_foreign_key_validating": "checking every existing row blocks writes to both tables; add it NOT VALID, then "
                                  "VALIDATE CONSTRAINT in a later migration",
    "set_not_null": "SET NOT NULL scans the whole table under an exclusive lock (reads and writes wait); add a CHECK "
                    "(column IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL (PostgreSQL 12+)",
    "volatile_default": "a volatile default (random(), a new UUID, clock_timestamp()) rewrites the whole table under "
                        "an exclusive lock; add the column without it and fill it in batches",
}
NOW_NOT_NULL = ("the live release may still write NULL into it: those writes fail; first ship a release that "
                "never writes NULL there, then this migration")
VOLATILE = re.compile(r"\b(random|gen_random_uuid|uuid_generate_v\w+|clock_timestamp|timeofday|nextval)\s*\(", re.I)
# what is unsafe even on a column the plan added: the live release's inserts, and locks on an existing table
CONCERN_ADDED = {"not_null_without_default", "index_without_concurrently", "add_foreign_key_validating",
                 "set_not_null", "volatile_default"}
COLUMN_WORDS = {"NOT", "NULL", "DEFAULT", "CONSTRAINT", "REFERENCES", "PRIMARY", "UNIQUE", "CHECK", "GENERATED",
                "COLLATE", "USING"}



@dataclass(frozen=True)
class Column:
    type: str
    null: bool
    default: bool = False


def columns_from_rows(rows) -> dict[str, dict[str, Column]]:
    """COLUMNS' rows -> {table: {column: Column}}."""
    out: dict[str, dict[str, Column]] = {}
    for table, name, ctype, nullable, default in rows:
        out.setdefault(table, {})[name] = Column(normal_type(ctype), bool(nullable), bool(default))
    return out


def normal_type(t: str) -> str:
    """Django's spelling and format_type()'s agree: character varying(n) = varchar(n), int4 = integer, ..."""
    t = " ".join(t.lower().replace(" (", "(").split())
    t = re.sub(r"^character varying", "varchar", t)
    return {"int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean",
            "timestamptz": "timestamp with time zone"}.get(t, t)


def rewrite_free(old: str, new: str) -> bool:
    """A type change PostgreSQL makes without rewriting the table, that the live release reads as before:
    a varchar widened or unlimited, varchar to text."""
    old_n, new_n = re.fullmatch(r"varchar\((\d+)\)", old), re.fullmatch(r"varchar\((\d+)\)", new)
    if old_n and new_n:
        return int(new_n.group(1)) >= int(old_n.group(1))
    return old.startswith("varchar") and new in ("text", "varchar") or old == "text" and new == "varchar"


def unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident[:1] == '"' else ident.lower()


def split_sql(text: str, sep: str = ";") -> list[str]:
    """Split on sep outside '...', "...", $tag$...$tag$, parentheses (for ',') and -- comments; BEGIN and
    COMMIT dropped, whitespace collapsed outside quotes."""
    out, cur, i, depth = [], [], 0, 0
    while i < len(text):
        c = text[i]
        m = re.match(r"\$[A-Za-z_]*\$", text[i:]) if c == "$" else None
        if c in "'\"" or m:
            end_mark = m.group(0) if m else c
            j = text.find(end_mark, i + len(end_mark))
            while not m and j != -1 and text[j + 1:j + 2] == c:      # '' and "" inside
                j = text.find(c, j + 2)
            j = len(text) if j == -1 else j + len(end_mark)
            cur.append(text[i:j])
            i = j
            continue
        if text.startswith("--", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
            continue
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(" " if c.isspace() else c)
        i += 1
    out.append("".join(cur))
    parts = [" ".join(p.split()) for p in out]
    return [p for p in parts if p and p.upper() not in ("BEGIN", "COMMIT")]


def parse_column(text: str) -> tuple[str, Column, str] | None:
    """'"name" varchar(40) DEFAULT 0 NOT NULL' -> (name, Column, the text after the type)."""
    m = re.match(rf"({IDENT})\s+(.*)$", text, re.S)
    if not m:
        return None
    words = re.findall(r"\([^)]*\)|'(?:[^']|'')*'|\S+", m.group(2))
    n = next((i for i, w in enumerate(words) if w.upper() in COLUMN_WORDS), len(words))
    rest = " " + re.sub(r"'(?:[^']|'')*'", "''", " ".join(words[n:])).upper() + " "
    col = Column(normal_type(" ".join(words[:n])), " NOT NULL " not in rest and " PRIMARY KEY " not in rest,
                 " DEFAULT " in rest)
    return unquote(m.group(1)), col, " ".join(words[n:])


class PgPlanCheck:
    """Walks the pending plan's statements in order, keeping the schema as it changes (PlanCheck's
    interface: check(statements) -> {"tables", "unsafe"} per migration)."""

    def __init__(self, before: dict[str, dict[str, Column]]):
        self.schema = {t: dict(cols) for t, cols in before.items()}
        self.created: set[str] = set()
        self.added: set[tuple[str, str]] = set()

    def check(self, statements: list[str]) -> dict:
        self.tables, self.unsafe, self.fresh_defaults = [], [], set()
        for stmt in statements:
            for s in split_sql(stmt):
                self.statement(s)
        return {"tables": self.tables, "unsafe": self.unsafe}

    def touch(self, table: str) -> None:
        if table not in self.tables:
            self.tables.append(table)

    def flag(self, kind: str, table: str, column: str | None = None, why: str = "") -> None:
        """A column the plan added is no concern of the live release's, but a lock on its table still is."""
        if table in self.created or (column and kind not in CONCERN_ADDED and (table, column) in self.added):
            return
        item = {"kind": kind, "table": table, "column": column, "why": why or WHY[kind]}
        if item not in self.unsafe:
            self.unsafe.append(item)

    def statement(self, s: str) -> None:
        m = re.match(rf"CREATE (?:UNLOGGED )?TABLE (?:IF NOT EXISTS )?{NAME} \((.*)\)", s, re.I)
        if m:
            table = unquote(m.group(1))
            self.created.add(table)
            self.schema[table] = {p[0]: p[1] for p in map(parse_column, split_sql(m.group(2), ",")) if p}
            return self.touch(table)
        m = re.match(rf"CREATE (UNIQUE )?INDEX (CONCURRENTLY )?.*? ON (?:ONLY )?{NAME}(.*)$", s, re.I)
        if m:
            table, column = unquote(m.group(3)), self.first_column(m.group(4))
            self.touch(table)
            if not m.group(2):
                self.flag("index_without_concurrently", table, column)
            if m.group(1):
                self.flag("add_unique", table, column)
            return None
        m = re.match(rf"(?:INSERT INTO|UPDATE|DELETE FROM|TRUNCATE(?: TABLE)?) (?:ONLY )?{NAME}", s, re.I)
        if m:
            return self.touch(unquote(m.group(1)))
        m = re.match(rf"DROP TABLE (?:IF EXISTS )?{NAME}", s, re.I)
        if m:
            table = unquote(m.group(1))
            self.touch(table)
            self.flag("drop_table", table)
            self.schema.pop(table, None)
            return None
        m = re.match(rf"ALTER TABLE (?:IF EXISTS )?(?:ONLY )?{NAME} (.*)$", s, re.I)
        if m:
            table = unquote(m.group(1))
            self.touch(table)
            for clause in split_sql(m.group(2), ","):
                self.alter(table, clause)
        return None

    def alter(self, table: str, clause: str) -> None:
        m = re.match(rf"RENAME TO ({IDENT})$", clause, re.I)
        if m:
            new = unquote(m.group(1))
            self.flag("rename_table", table)
            self.created |= {new} if table in self.created else set()
            self.schema[new] = self.schema.pop(table, {})
            return self.touch(new)
        m = re.match(rf"RENAME (?:COLUMN )?({IDENT}) TO ({IDENT})$", clause, re.I)
        if m:
            old, new = unquote(m.group(1)), unquote(m.group(2))
            self.flag("rename_column", table, old)
            cols = self.schema.setdefault(table, {})
            cols[new] = cols.pop(old, Column("", True))
            self.added |= {(table, new)} if (table, old) in self.added else set()
            return None
        m = re.match(rf"ADD (?:COLUMN )?(?:IF NOT EXISTS )?(?!CONSTRAINT\b|PRIMARY\b|UNIQUE\b|CHECK\b|FOREIGN\b|"
                     rf"EXCLUDE\b)({IDENT} .*)$", clause, re.I)
        if m and parse_column(m.group(1)):
            return self.add_column(table, *parse_column(m.group(1)))
        if re.match(r"ADD (?:CONSTRAINT \S+ )?FOREIGN KEY", clause, re.I) and not re.search(r"\bNOT VALID$", clause,
                                                                                                re.I):
            return self.flag("add_foreign_key_validating", table, self.first_column(clause))
        if re.match(r"ADD (?:CONSTRAINT \S+ )?UNIQUE\b", clause, re.I):
            return self.flag("add_unique", table, self.first_column(clause))
        m = re.match(rf"DROP (?:COLUMN )?(?:IF EXISTS )?(?!CONSTRAINT\b)({IDENT})(?: CASCADE| RESTRICT)?$", clause,
                     re.I)
        if m:
            self.schema.get(table, {}).pop(unquote(m.group(1)), None)
            return self.flag("drop_column", table, unquote(m.group(1)))
        m = re.match(rf"ALTER (?:COLUMN )?({IDENT}) (.*)$", clause, re.I)
        if m:
            return self.alter_column(table, unquote(m.group(1)), m.group(2))
        return None

    def first_column(self, clause: str) -> str | None:
        cols = re.search(rf"\(\s*({IDENT})", clause)
        return unquote(cols.group(1)) if cols else None

    def add_column(self, table: str, name: str, col: Column, rest: str) -> None:
        if not col.null and not col.default:
            self.flag("not_null_without_default", table, name)
        if col.default and VOLATILE.search(rest):
            self.flag("volatile_default", table, name)
        if re.search(r"\bUNIQUE\b|\bPRIMARY KEY\b", rest, re.I):
            self.flag("add_unique", table, name)
        if re.search(r"\bREFERENCES\b", rest, re.I):
            self.flag("add_foreign_key_validating", table, name)
        if col.default and not col.null:
            self.fresh_defaults.add((table, name))
        self.schema.setdefault(table, {})[name] = col
        self.added.add((table, name))

    def alter_column(self, table: str, name: str, action: str) -> None:
        old = self.schema.get(table, {}).get(name)
        m = re.match(r"(?:SET DATA )?TYPE (.+?)(?: COLLATE .*| USING .*)?$", action, re.I)
        if m:
            new = normal_type(m.group(1))
            if old is None or (old.type != new and not rewrite_free(old.type, new)):
                self.flag("alter_type", table, name)
            self.schema.setdefault(table, {})[name] = Column(new, old.null if old else True,
                                                             old.default if old else False)
        elif re.fullmatch(r"SET NOT NULL", action, re.I):
            fresh = (table, name) in self.added
            self.flag("set_not_null", table, name)
            self.flag("not_null_without_default", table, name, "" if fresh else NOW_NOT_NULL)
            if old:
                self.schema[table][name] = Column(old.type, False, old.default)
        elif re.fullmatch(r"DROP DEFAULT", action, re.I) and (table, name) in self.fresh_defaults:
            self.flag("not_null_without_default", table, name)
