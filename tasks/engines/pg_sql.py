"""PostgreSQL without I/O: what the app and libpq's tools are given (the URL, the password file line, the
environment), the SQL the tool runs through psql with the parser of each answer, and the one-line reading
of a refused login. The unsafe-operation parser of sqlmigrate's SQL is pg_sqlcheck.py.

A password reaches psql, pg_dump and pg_restore only through a 0600 password file on the host (PGPASSFILE):
never an argv, never PGPASSWORD (which /proc/<pid>/environ shows the process's user and ps e prints).
"""
from __future__ import annotations

import re
from urllib.parse import quote

from ..config import ConfigError, Database

APP_NAME = "doit-stages"     # application_name of every session of the tool (pg_stat_activity shows it)
CONNECT_TIMEOUT = 10         # seconds libpq waits for the server to answer
# psql: no ~/.psqlrc, unaligned, tuples only, stop at the first error, fields split by a tab
PSQL = ("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t")


# -- what the app and the tools are given ---------------------------------------------------------------
def database_url(db: Database) -> str:
    """postgres://user:pw@host:port/name[?sslmode=...], every part percent-encoded; the password only with
    password_env (with passfile libpq reads it from PGPASSFILE: pgpassfile_env)."""
    auth = quote(db.user, safe="")
    if db.password_env:
        auth += ":" + quote(db.password(), safe="")
    host = f"[{db.host}]" if ":" in db.host else db.host
    query = f"?sslmode={db.sslmode}" if db.sslmode else ""
    return f"postgres://{auth}@{host}:{db.port}/{quote(db.dbname, safe='')}{query}"


def host_passfile(db: Database, home: str) -> str:
    """passfile as a path on the host: libpq does not expand ~ in PGPASSFILE, so ~/ becomes home/."""
    return home.rstrip("/") + db.passfile[1:] if db.passfile.startswith("~/") else db.passfile


def pgpassfile_env(db: Database, home: str) -> dict[str, str]:
    """With passfile: {"PGPASSFILE": <its path on the host>} beside a DATABASE_URL without password; else {}."""
    return {"PGPASSFILE": host_passfile(db, home)} if db.passfile else {}


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def pgpass_line(db: Database) -> str:
    """The one line of a libpq password file for this database (password_env's password), fields escaped as
    libpq reads them (\\ and : behind a backslash). A line break cannot be written in that file: refused."""
    password = db.password()
    if any(c in password for c in "\r\n\0"):
        raise ConfigError(f"[database:{db.name}] password_env: the password in ${db.password_env} holds a line "
                          "break, which libpq's password file cannot hold; set a password without one")
    fields = (db.host, str(db.port), db.dbname, db.user, password)
    return ":".join(_pgpass_field(f) for f in fields) + "\n"


def client_env(db: Database, passfile_path: str) -> dict[str, str]:
    """The environment of psql, pg_dump and pg_restore for this database: names and paths only (the password
    stays in the file at passfile_path: the tool's 0600 temporary one, or the user's passfile)."""
    env = {"PGHOST": db.host, "PGPORT": str(db.port), "PGUSER": db.user, "PGDATABASE": db.dbname,
           "PGPASSFILE": passfile_path, "PGAPPNAME": APP_NAME, "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
    if db.sslmode:
        env["PGSSLMODE"] = db.sslmode
    return env


def env_argv(env: dict[str, str], argv) -> list[str]:
    """`env K=V ... argv`: the environment on the command line, as the host's `env` sets it (no shell)."""
    for key, value in env.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key) or "\0" in value or "\n" in value:
            raise ValueError(f"{key}={value!r} cannot be passed through env")
    return ["env", *(f"{k}={v}" for k, v in env.items()), *argv]


def psql_argv(sql: str) -> list[str]:
    """psql running one query whose rows come back as tab-separated lines."""
    return [*PSQL, "-c", sql]


# -- queries and their parsers --------------------------------------------------------------------------
# Exact COUNT(*) of every base table in the database's own schemas, in one statement (query_to_xml runs the
# count of each table; pg_class.reltuples would be an estimate). A partitioned table's rows are counted in
# its partitions (relkind 'r'), never again in the parent ('p'): pg_dump's COPY blocks are the partitions',
# and the counts of a backup (hostside/dumpfilter.py) and of its restore must name the same tables.
ROW_COUNTS = """SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END,
 (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
  false, true, '')))[1]::text::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1"""


# What psql prints of a restore's load (dumpfilter.pg_prologue: ECHO queries, tags on): each COPY of the dump
# echoed, then its tag, the rows the server stored. Names as pg_dump writes them (quoted when they must be,
# a quoted one may hold any character, a newline too), and as ROW_COUNTS names a table.
_IDENT = r'"(?:[^"]|"")+"|[^\s."(]+'
_COPY_ECHO = re.compile(r'^COPY (' + _IDENT + r')\.(' + _IDENT + r')(?: \((?:"(?:[^"]|"")*"|[^"()])*\))? '
                        r'FROM stdin;\nCOPY (\d+)$', re.MULTILINE)


def _unquote(raw: str) -> str:
    return raw[1:-1].replace('""', '"') if raw.startswith('"') else raw


def parse_copy_tags(text: str) -> dict[str, int]:
    """A restore's psql output -> {table (schema.table outside public): rows its COPY stored}. Pure. A table
    whose COPY is not found here is missing from the answer (the caller then counts the tables instead):
    e.g. a name holding a newline, since the host sends back only the lines that begin with COPY."""
    counts: dict[str, int] = {}
    for m in _COPY_ECHO.finditer(text):
        schema, table = _unquote(m.group(1)), _unquote(m.group(2))
        name = table if schema == "public" else f"{schema}.{table}"
        counts[name] = counts.get(name, 0) + int(m.group(3))
    return counts


def parse_row_counts(text: str) -> dict[str, int]:
    """ROW_COUNTS' output -> {table (schema.table outside public): rows}; ValueError on a line that is not."""
    counts = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        table, sep, count = line.rpartition("\t")
        if not sep or not table or not count.isdigit():
            raise ValueError(f"not a row count: {line!r}")
        counts[table] = int(count)
    return counts


# What tells two databases apart, asked of the server: its cluster (system_identifier, fixed at initdb),
# where it listens as this session reached it, and the database's oid and name.
SERVER_IDENTITY = """SELECT (SELECT system_identifier FROM pg_control_system()), coalesce(host(inet_server_addr()), ''),
 coalesce(inet_server_port(), 0), d.oid, d.datname
FROM pg_database d WHERE d.datname = current_database()"""


def server_identity_sql(dbname: str) -> str:
    """SERVER_IDENTITY of the database named dbname, asked in any database of the server (the maintenance
    one): a database that does not exist yet (a test stage's first restore) has oid 0, which no database
    has, so it is never taken for another."""
    return f"""SELECT (SELECT system_identifier FROM pg_control_system()), coalesce(host(inet_server_addr()), ''),
 coalesce(inet_server_port(), 0), coalesce((SELECT oid FROM pg_database WHERE datname = {_literal(dbname)}), 0),
 {_literal(dbname)}"""


# The database to be dropped is not the protected one (hostside/dumpfilter.py PG_PROTECTED: the same text),
# asked in the session that drops it, in the maintenance database
PROTECTED = ("DO $$BEGIN IF (SELECT system_identifier FROM pg_control_system()) = {system} AND "
             "(SELECT oid FROM pg_database WHERE datname = {name}) = {oid} THEN "
             "RAISE EXCEPTION 'doit-stages: protected database {index}'; END IF; END$$")
PROTECTED_RE = re.compile(r"doit-stages: protected database (\d+)")


def protected_entries(dbname: str, protected) -> list[str]:
    """"<system identifier>:<oid>:<index>" of each server_identity answer in protected that a database named
    dbname could have (a PostgreSQL one, of that name, that exists): the others can never be it."""
    return [f"{int(ident[1])}:{int(ident[2])}:{i}" for i, ident in enumerate(protected)
            if ident[0] == "postgresql" and ident[3] == dbname and ident[2]]


def protected_sql(dbname: str, entries: list[str]) -> str:
    """PROTECTED for each of protected_entries' answers, one statement each."""
    out = []
    for e in entries:
        system, oid, index = (int(x) for x in e.split(":"))
        out.append(PROTECTED.format(system=system, name=_literal(dbname), oid=oid, index=index) + ";")
    return " ".join(out)


def parse_server_identity(text: str) -> tuple[int, str, int, int, str]:
    """SERVER_IDENTITY's output -> (system_identifier, server address, port, database oid, database name)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    fields = lines[0].split("\t") if len(lines) == 1 else []
    if len(fields) != 5 or not all(fields[i].isdigit() for i in (0, 2, 3)):
        raise ValueError(f"not a server identity: {text.strip()!r}")
    return int(fields[0]), fields[1], int(fields[2]), int(fields[3]), fields[4]


def _literal(value: str) -> str:
    if "\0" in value:
        raise ValueError(f"{value!r} holds a NUL")
    return "'" + value.replace("'", "''") + "'"


def blockers_sql(tables=()) -> str:
    """Who holds up the tool's migration: the sessions pg_blocking_pids names for a waiting session of the
    tool (application_name doit-stages...), and those holding a lock on one of `tables` (the statement's, for
    after the wait gave up). One row each: pid, user, application, state, query start (UTC), the table,
    the first 80 characters of its query."""
    names = ", ".join(_literal(t) for t in tables)
    return f"""WITH waiter AS (
  SELECT a.pid, l.relation FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
  WHERE a.application_name LIKE '{APP_NAME}%' AND a.datname = current_database()),
held AS (
  SELECT b.pid, w.relation FROM waiter w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)
  UNION
  SELECT l.pid, l.relation FROM pg_locks l
  WHERE l.granted AND l.relation IN (SELECT to_regclass(quote_ident(t)) FROM unnest(ARRAY[{names}]::text[]) t))
SELECT h.pid, coalesce(s.usename, ''), coalesce(s.application_name, ''), coalesce(s.state, ''),
 coalesce(to_char(s.query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), ''),
 coalesce(h.relation::regclass::text, ''), regexp_replace(left(coalesce(s.query, ''), 80), '\\s+', ' ', 'g')
FROM (SELECT pid, min(relation::text)::oid AS relation FROM held GROUP BY pid) h
LEFT JOIN pg_stat_activity s ON s.pid = h.pid
WHERE h.pid <> pg_backend_pid() AND h.pid NOT IN (SELECT pid FROM waiter)
ORDER BY s.query_start NULLS LAST, h.pid"""


BLOCKERS = blockers_sql()


def describe_blockers(text: str) -> str:
    """blockers_sql's output -> one line naming each session ("" when there is none)."""
    out = []
    for line in text.splitlines():
        fields = line.split("\t", 6)
        if len(fields) != 7 or not fields[0].isdigit():
            continue
        pid, user, app, state, since, table, query = fields
        parts = [f"user {user or '?'}"] + ([f"application {app!r}"] if app else [])
        parts.append(f"{state or 'state unknown'}" + (f", query started {since}" if since else ""))
        on = f" holding {table}" if table else ""
        out.append(f"pid {pid} ({', '.join(parts)}){on}" + (f": {query.strip()}" if query.strip() else ""))
    return "; ".join(out)


# -- a refused connection -------------------------------------------------------------------------------
DENIALS = (
    (re.compile(r'password authentication failed for user "([^"]*)"'), "login"),
    (re.compile(r"fe_sendauth: no password supplied"), "login"),
    (re.compile(r'no pg_hba\.conf entry for host "([^"]*)", user "([^"]*)", database "([^"]*)"'), "hba"),
    (re.compile(r'role "([^"]*)" does not exist'), "role"),
    (re.compile(r'database "([^"]*)" does not exist'), "database"),
    (re.compile(r'permission denied for database "?([^"\s]*)"?'), "connect"),
)


def access_denied(db: Database, text: str) -> str | None:
    """A refusal by the server in `text` (a client's or a driver's error output) as one line naming the key
    to fix and what to do; None when the text holds none."""
    where, sec = f"[database:{db.name}] {db.host}:{db.port}", f"[database:{db.name}]"
    for pattern, kind in DENIALS:
        m = pattern.search(text)
        if not m:
            continue
        if kind == "login":
            source = (f"the password comes from ${db.password_env} ({sec} password_env); export the password of "
                      f"role {db.user} in {db.password_env}" if db.password_env else
                      f"the password comes from libpq's password file on the host ({sec} passfile = {db.passfile}); "
                      f"put a line {db.host}:{db.port}:{db.dbname}:{db.user}:<password> in it (mode 0600)")
            return f"{where} refused the password of role {db.user}: {source}, or fix {sec} user"
        if kind == "hba":
            return (f"{where} has no pg_hba.conf entry for host {m.group(1)}, role {m.group(2)}, database "
                    f"{m.group(3)}: add one on the server, or fix {sec} host, user, name or sslmode")
        if kind == "role":
            return f"{where} has no role {m.group(1)}: create it on the server, or fix {sec} user"
        if kind == "database":
            return f"{where} has no database {m.group(1)}: create it owned by {db.user}, or fix {sec} name"
        return (f"{where} refused role {db.user} the database {m.group(1) or db.dbname} (permission denied): "
                f"GRANT CONNECT ON DATABASE to it, or fix {sec} name or user")
    return None


# -- a restore's rights ---------------------------------------------------------------------------------
MAINTENANCE_DB = "postgres"   # where a restore's psql drops and creates the database
RESTORE_REFUSALS = (
    (re.compile(r"permission denied to create database"), "createdb"),
    (re.compile(r'must be owner of database "?([^"\s]+)"?'), "owner"),
    (re.compile(r"permission denied to terminate process|must be a (?:superuser|member of the role whose "
                r"process is being terminated)"), "terminate"),
    (re.compile(rf'database "{MAINTENANCE_DB}" does not exist'), "maintenance"),
)


def restore_refusal(db: Database, text: str) -> str | None:
    """What a restore (DROP DATABASE ... WITH (FORCE), CREATE DATABASE ... OWNER user, in the maintenance
    database) was refused, in `text` (psql's error output), as one line naming the right the role lacks and
    the key; None when the text holds none."""
    where, sec = f"[database:{db.name}] {db.host}:{db.port}", f"[database:{db.name}]"
    for pattern, kind in RESTORE_REFUSALS:
        m = pattern.search(text)
        if not m:
            continue
        if kind == "createdb":
            return (f"{where}: role {db.user} lacks CREATEDB, and a restore drops database {db.dbname} and creates "
                    f"it again owned by that role: ALTER ROLE {db.user} CREATEDB on the server, or fix {sec} user")
        if kind == "owner":
            return (f"{where}: role {db.user} does not own database {m.group(1)}, and only its owner may drop it "
                    f"for a restore: ALTER DATABASE {m.group(1)} OWNER TO {db.user} on the server, or fix {sec} "
                    "user or name")
        if kind == "terminate":
            return (f"{where}: sessions of another role use database {db.dbname}, and role {db.user} may not end "
                    f"them for the restore's DROP DATABASE ... WITH (FORCE): end them, or GRANT pg_signal_backend "
                    f"TO {db.user} on the server")
        return (f"{where} has no database {MAINTENANCE_DB}, where a restore drops and creates {db.dbname}: "
                f"create it on the server (CREATE DATABASE {MAINTENANCE_DB})")
    return None
