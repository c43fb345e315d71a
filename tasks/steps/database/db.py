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


# the server's refusals: 1045 (the login: user or password), 1044 (the login worked, the database is not its)
DENIED_LOGIN = re.compile(r"Access denied for user '([^']*)'@'([^']*)' \(using password: (YES|NO)\)")
DENIED_DATABASE = re.compile(r"Access denied for user '([^']*)'@'([^']*)' to database '([^']*)'")


def access_denied(db: Database, text: str) -> str | None:
    """A client's or a driver's "Access denied" in `text` (its error output) as one line naming the key that
    supplies the password and what to do; None when the text holds no such refusal."""
    where = f"[database:{db.name}] {db.host}:{db.port}"
    m = DENIED_DATABASE.search(text)
    if m:
        return (f"{where} let user {m.group(1)!r} log in but refused it database {m.group(3)!r} (Access denied): "
                f"grant that user its rights on {m.group(3)}, or fix [database:{db.name}] name or user")
    m = DENIED_LOGIN.search(text)
    if not m:
        return None
    refused = f"{where} refused the login of user {m.group(1)!r}@{m.group(2)!r} (Access denied"
    if db.password_env:
        empty = ", with no password: the variable is empty" if m.group(3) == "NO" else ""
        return (f"{refused}{empty}): the password comes from ${db.password_env} ([database:{db.name}] "
                f"password_env); export that user's password in {db.password_env}, or fix [database:{db.name}] user")
    return (f"{refused}): the password comes from the option file on the host ([database:{db.name}] option_file = "
            f"{db.option_file}); put that user's password in it, or fix [database:{db.name}] user")
