"""What a migration's SQL does to the release still serving production: pure parsers of `sqlmigrate` SQL
(MariaDB/MySQL and sqlite, as Django writes it) into the tables it touches and its unsafe operations.

Unsafe (the kinds of docs/rehearsal.md): drop_column, drop_table, rename_column, rename_table, alter_type,
not_null_without_default, add_unique. A table created earlier in the same pending plan is never unsafe:
the live release does not use it yet. Types and nullability before the migration come from the copy's
schema (information_schema.COLUMNS, or sqlite_master's CREATE statements).
"""
from __future__ import annotations

import re

from .sqltext import IDENT, Column, parse_column_def, split_statements, split_top, unquote

WHY = {
    "drop_column": "the live release still selects and inserts it",
    "drop_table": "the live release still reads and writes it",
    "rename_column": "the live release still uses the old name",
    "rename_table": "the live release still uses the old name",
    "alter_type": "the live release reads and writes the old type (and a type change copies the table)",
    "not_null_without_default": "the live release inserts rows without it: they fail; give the field db_default= "
                                "(Django 5.0+: a default the database keeps and fills in for the live release's "
                                "inserts), not only default= (Django drops that from the table right after)",
    "add_unique": "existing or new duplicate values make the migration or the live release's writes fail",
}


# an existing column made NOT NULL: a database default does not help the live release, which writes NULL
NOW_NOT_NULL = ("the live release may still write NULL into it: those writes fail; first ship a release that "
                "never writes NULL there, then this migration")


def widened_varchar(old: str, new: str) -> bool:
    a, b = re.fullmatch(r"varchar\((\d+)\)", old), re.fullmatch(r"varchar\((\d+)\)", new)
    return bool(a and b and int(b.group(1)) >= int(a.group(1)))


class PlanCheck:
    """Walks the pending plan's statements in order, keeping the schema as it changes, so that a table
    or column created earlier in the plan is known as such."""

    def __init__(self, before: dict[str, dict[str, Column]]):
        self.schema = {t: dict(cols) for t, cols in before.items()}
        self.created: set[str] = set()
        self.added: set[tuple[str, str]] = set()   # columns added by the plan: the live release ignores them
        self.remakes: dict[str, dict] = {}          # sqlite: table -> the new table's columns and copy map

    def check(self, statements: list[str]) -> dict:
        self.tables, self.unsafe, self.fresh_defaults = [], [], set()
        for stmt in statements:
            for s in split_statements(stmt):
                self.statement(" ".join(s.split()))
        return {"tables": self.tables, "unsafe": self.unsafe}

    # -- helpers ---------------------------------------------------------------------------------
    def touch(self, table: str) -> None:
        table = table[5:] if table.startswith("new__") else table
        if table not in self.tables:
            self.tables.append(table)

    def flag(self, kind: str, table: str, column: str | None = None, why: str = "") -> None:
        if table in self.created or (column and kind != "not_null_without_default"
                                     and (table, column) in self.added):
            return
        item = {"kind": kind, "table": table, "column": column, "why": why or WHY[kind]}
        if item not in self.unsafe:
            self.unsafe.append(item)

    def add_column(self, table: str, name: str, col: Column, fills: bool = False) -> None:
        """A column new to the table: NOT NULL needs a database default (Django's default= is not one:
        it is dropped right after, or only used to fill the existing rows)."""
        if not col.null and (not col.default or fills):
            self.flag("not_null_without_default", table, name)
        if col.unique:
            self.flag("add_unique", table, name)
        self.schema.setdefault(table, {})[name] = col
        self.added.add((table, name))

    def change_column(self, table: str, old_name: str, name: str, col: Column) -> None:
        old = self.schema.get(table, {}).get(old_name)
        if old_name != name:
            self.flag("rename_column", table, old_name)
        if old is not None:
            if old.type != col.type and not widened_varchar(old.type, col.type):
                self.flag("alter_type", table, name)
            if old.null and not col.null:   # the live release omits a column new in this plan: db_default helps
                self.flag("not_null_without_default", table, name,
                          "" if (table, old_name) in self.added else NOW_NOT_NULL)
            if col.unique and not old.unique:
                self.flag("add_unique", table, name)
            if (table, old_name) in self.added:
                self.added.add((table, name))
        self.schema.setdefault(table, {}).pop(old_name, None)
        self.schema[table][name] = col

    # -- statements ------------------------------------------------------------------------------
    def statement(self, s: str) -> None:
        m = re.match(rf"CREATE TABLE (?:IF NOT EXISTS )?({IDENT}) \((.*)\)[^)]*$", s, re.I)
        if m:
            return self.create_table(unquote(m.group(1)), m.group(2))
        m = re.match(rf"INSERT INTO ({IDENT}) \((.*?)\) SELECT (.*) FROM ({IDENT})$", s, re.I)
        if m and unquote(m.group(1)).startswith("new__"):
            cols = [unquote(c) for c in split_top(m.group(2))]
            self.remakes.setdefault(unquote(m.group(4)), {})["map"] = dict(zip(cols, split_top(m.group(3))))
            return self.touch(unquote(m.group(4)))
        m = re.match(rf"(?:INSERT INTO|UPDATE|DELETE FROM|TRUNCATE(?: TABLE)?) ({IDENT})", s, re.I)
        if m:
            return self.touch(unquote(m.group(1)))
        m = re.match(rf"DROP TABLE (?:IF EXISTS )?({IDENT})", s, re.I)
        if m:
            table = unquote(m.group(1))
            self.touch(table)
            if table not in self.remakes:
                self.flag("drop_table", table)
                self.schema.pop(table, None)
            return None
        m = re.match(rf"(?:RENAME TABLE ({IDENT}) TO|ALTER TABLE ({IDENT}) RENAME (?:TO|AS)) ({IDENT})$", s, re.I)
        if m:
            return self.rename_table(unquote(m.group(1) or m.group(2)), unquote(m.group(3)))
        m = re.match(rf"CREATE (UNIQUE )?INDEX .*? ON ({IDENT})", s, re.I)
        if m:
            self.touch(unquote(m.group(2)))
            if m.group(1):
                self.flag("add_unique", unquote(m.group(2)))
            return None
        m = re.match(rf"ALTER TABLE ({IDENT}) (.*)$", s, re.I)
        if m:
            table = unquote(m.group(1))
            self.touch(table)
            for clause in split_top(m.group(2)):
                self.alter_clause(table, clause)
        return None

    def create_table(self, table: str, body: str) -> None:
        cols = dict(d for d in map(parse_column_def, split_top(body)) if d)
        if table.startswith("new__"):
            self.remakes.setdefault(table[5:], {})["cols"] = cols
            return self.touch(table)
        self.created.add(table)
        self.schema[table] = cols
        return self.touch(table)

    def rename_table(self, old: str, new: str) -> None:
        if old.startswith("new__") and old[5:] == new:
            return self.finish_remake(new)
        self.touch(old)
        self.flag("rename_table", old)
        if old in self.created:
            self.created.add(new)
        self.schema[new] = self.schema.pop(old, {})
        self.touch(new)
        return None

    def finish_remake(self, table: str) -> None:
        """sqlite rebuilds a table to change it: compare the new table's columns and the copy's column map
        with the old table."""
        remake = self.remakes.pop(table, {})
        old, new, copy = self.schema.get(table, {}), remake.get("cols", {}), remake.get("map", {})
        sources = {}
        for name in new:
            expr = re.sub(r"'(?:[^']|'')*'", "''", copy.get(name, ""))
            refs = [unquote(r) for r in re.findall(IDENT, expr) if unquote(r) in old]
            if refs:
                sources[name] = refs[0]
        for gone in [c for c in old if c not in sources.values()]:
            self.flag("drop_column", table, gone)
        self.schema[table] = {}
        for name, col in new.items():
            if name in sources:
                self.schema[table][sources[name]] = old[sources[name]]
                self.change_column(table, sources[name], name, col)
            else:
                self.add_column(table, name, col, fills=name in copy)

    def alter_clause(self, table: str, clause: str) -> None:
        c = clause.upper()
        m = re.match(rf"ADD (?:COLUMN )?({IDENT}) (.*)$", clause, re.I)
        if m and m.group(1).upper() not in ("CONSTRAINT", "INDEX", "KEY", "UNIQUE", "PRIMARY", "FOREIGN",
                                             "FULLTEXT", "SPATIAL", "CHECK"):
            name, col = parse_column_def(f"{m.group(1)} {m.group(2)}")
            if col.default and not col.null:
                self.fresh_defaults.add((table, name))
            return self.add_column(table, name, col)
        if c.startswith(("ADD UNIQUE", "ADD CONSTRAINT")) and re.search(r"\bUNIQUE\b", c):
            cols = re.search(r"\(([^)]*)\)", clause)
            return self.flag("add_unique", table, unquote(split_top(cols.group(1))[0]) if cols else None)
        m = re.match(rf"DROP (?:COLUMN )?({IDENT})$", clause, re.I)
        if m and m.group(1).upper() not in ("INDEX", "KEY", "PRIMARY", "FOREIGN", "CONSTRAINT", "CHECK"):
            name = unquote(m.group(1))
            self.schema.get(table, {}).pop(name, None)
            return self.flag("drop_column", table, name)
        m = re.match(rf"RENAME COLUMN ({IDENT}) TO ({IDENT})$", clause, re.I)
        if m:
            old, new = unquote(m.group(1)), unquote(m.group(2))
            col = self.schema.get(table, {}).get(old) or Column("", True)
            return self.change_column(table, old, new, col)
        m = re.match(rf"(?:CHANGE (?:COLUMN )?({IDENT})|MODIFY (?:COLUMN )?)\s*({IDENT}) (.*)$", clause, re.I)
        if m:
            name, col = parse_column_def(f"{m.group(2)} {m.group(3)}")
            return self.change_column(table, unquote(m.group(1)) if m.group(1) else name, name, col)
        m = re.match(rf"ALTER (?:COLUMN )?({IDENT}) DROP DEFAULT$", clause, re.I)
        if m and (table, unquote(m.group(1))) in self.fresh_defaults:
            self.flag("not_null_without_default", table, unquote(m.group(1)))
        return None
