"""The databases: option files, the SQL the tool runs through the client on a host, and pure parsers of
its output.

The steps query through the `mysql` client on the host (over the transport), because the database is
often reachable only from the hosts, not from the deploying machine. (The tests check the databases from
here with mysql-connector-python: tests/harness.py.)
"""
from __future__ import annotations

import re

from ...config import Database
from ...hostside import script

# One round trip: COUNT(*) of every base table (never information_schema's InnoDB estimates).
ROW_COUNTS_SQL = (
    "SET SESSION group_concat_max_len = 16777216; "
    "SELECT COALESCE(GROUP_CONCAT(CONCAT('SELECT ', QUOTE(table_name), ', COUNT(*) FROM `', "
    "REPLACE(table_name, '`', '``'), '`') ORDER BY table_name SEPARATOR ' UNION ALL '), "
    "'SELECT 1, 1 FROM DUAL WHERE FALSE') INTO @q FROM information_schema.tables "
    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'; "
    "PREPARE doit_stages_counts FROM @q; EXECUTE doit_stages_counts; DEALLOCATE PREPARE doit_stages_counts;"
)

# sqlite, run by python3 on the host: $1 database file -> "table<TAB>count" lines.
SQLITE_COUNTS_PY = script("sqlite_counts.py")


def option_file(db: Database, include: str | None = None) -> bytes:
    """A [client] option file for mysql/mysqldump. Values are double-quoted with \\ and " escaped: that
    is how the MariaDB/MySQL option-file reader keeps spaces, ; # ' ` $ and backslashes of a password.
    `include`: the user's own option file on the host (option_file =), read first by the client, so that
    its password applies and stages.ini's host, port and user win."""
    if "\n" in db.password() or "\r" in db.password():
        raise ValueError(f"[database:{db.name}] the password in ${db.password_env} contains a line break, "
                         "which MySQL option files cannot hold; change the password")
    if include and any(c in include for c in "\n\r"):
        raise ValueError(f"[database:{db.name}] option_file {include!r} holds a line break; rename the file")
    lines = ([f"!include {include}"] if include else []) + [
        "[client]", f"host={_quote(db.host)}", f"port={db.port}", f"user={_quote(db.user)}"]
    if db.password_env:
        lines.append(f"password={_quote(db.password())}")
    return ("\n".join(lines) + "\n").encode()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_row_counts(text: str) -> dict[str, int]:
    """'table<TAB>count' lines (mysql -N -B, or the sqlite script) -> {table: count}."""
    counts = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"(.+)\t(\d+)", line)
        if not m:
            raise ValueError(f"unexpected row-count line {line!r}")
        counts[m.group(1)] = int(m.group(2))
    return counts


def counts_mismatch(expected: dict, expected_after: dict | None, actual: dict) -> list[str]:
    """Tables whose restored row count is not what the backup held. A table written to while it was
    dumped may hold any count between the counts taken before and after the dump."""
    after = expected_after or expected
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append(f"{table}: missing")
            continue
        if table not in expected and table not in after:
            problems.append(f"{table}: not in the backup")
            continue
        lo = min(expected.get(table, 0), after.get(table, 0))
        hi = max(expected.get(table, 0), after.get(table, 0))
        if not lo <= actual[table] <= hi:
            problems.append(f"{table}: {actual[table]} rows, backup has {expected.get(table)}")
    return problems



# Which server a client reaches, as the server itself says: two names (or ports, through a forward) that
# reach one server give the same answer.
SERVER_IDENTITY_SQL = "SELECT @@hostname, @@port, @@datadir"


def parse_server_identity(text: str) -> tuple[str, int, str]:
    """`mysql -N -B -e SERVER_IDENTITY_SQL` output -> (hostname, port, datadir)."""
    fields = text.strip().split("\t")
    if len(fields) != 3 or not fields[1].isdigit():
        raise ValueError(f"unexpected server identity {text.strip()!r}")
    return fields[0], int(fields[1]), fields[2].rstrip("/")
