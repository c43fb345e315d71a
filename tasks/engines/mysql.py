"""MySQL and MariaDB: the app's DATABASE_URL, the client's option file on the host, the dump and its one-pass
check (hostside/dumpfilter.py), the restore with bounded lock waits, the server's identity, its refusals
("Access denied") as what to fix, and the rehearsal's reads of the copy from here (mysql-connector-python).

The steps query through the `mysql` client on the host (over the transport), because the database is
often reachable only from the hosts, not from the deploying machine. (The tests check the databases from
here with mysql-connector-python: tests/harness.py.)

The deploying machine reads a database itself only for the rehearsal of one with password_env: its schema
and size reads and its write probe (hostside/rehearsal_probe.py), with mysql-connector-python (pure Python)
through an SSH tunnel to the database as the hosts see it. The password stays in this process's memory (it
came from the environment); it is never written anywhere and never on a command line. A database with
option_file is never read from here: its password stays on the hosts, and the rehearsal reads and probes it
there, through the app's own connection (hostside/rehearsal_runner.py).
"""
from __future__ import annotations

import contextlib
import json
import re
from typing import Callable, Sequence
from urllib.parse import quote

from ..config import Database
from ..errors import StepError
from ..hostside import rehearsal_probe, script
from ..layout import Layout
from ..runtime.common import last_line
from ..runtime.leftovers import list_leftovers, sweep_leftovers
from ..transport import CommandFailed, Transport
from .base import Engine, check_sha, parse_row_counts, secret_call, secret_file, told_as, verify_file
from .sqltext import Column, columns_from_mysql
from .streaming import run_streaming

# One round trip: COUNT(*) of every base table (never information_schema's InnoDB estimates).
ROW_COUNTS_SQL = (
    "SET SESSION group_concat_max_len = 16777216; "
    "SELECT COALESCE(GROUP_CONCAT(CONCAT('SELECT ', QUOTE(table_name), ', COUNT(*) FROM `', "
    "REPLACE(table_name, '`', '``'), '`') ORDER BY table_name SEPARATOR ' UNION ALL '), "
    "'SELECT 1, 1 FROM DUAL WHERE FALSE') INTO @q FROM information_schema.tables "
    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'; "
    "PREPARE doit_stages_counts FROM @q; EXECUTE doit_stages_counts; DEALLOCATE PREPARE doit_stages_counts;"
)

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


DUMP_ARGS = ('mysqldump --defaults-extra-file="$1" --single-transaction --quick --routines --triggers --events '
             '--hex-blob --no-tablespaces -- "$2"')
MYSQLDUMP = f'set -o pipefail; umask 077; {DUMP_ARGS} | gzip -1 -n -c > "$3"'
# $4: dumpfilter.py's text; prints the backup's sha256, size and row counts as one JSON line
MYSQLDUMP_STREAM = f'set -o pipefail; umask 077; {DUMP_ARGS} | python3 -c "$4" dump "$3"'
HAS_PYTHON = ["python3", "-c", "import hashlib, json, threading, zlib"]

# $4 (if not empty) the client's --init-command: the session's lock waits bounded (restore_in_place)
MYSQL_LOAD = 'set -o pipefail; gunzip -c "$1" | mysql --defaults-extra-file="$2" ${4:+"--init-command=$4"} -- "$3"'
# $4 the expected sha256, $5 dumpfilter.py's text: the filter writes DROP/CREATE/USE of $3, then the dump;
# $6 as MYSQL_LOAD's $4
DAMAGED = 5            # the filter's exit code when the file's sha256 is not the metadata's
MYSQL_LOAD_STREAM = ('set -o pipefail; python3 -c "$5" restore "$1" "$4" mysql "$3" | '
                     'mysql --defaults-extra-file="$2" ${6:+"--init-command=$6"}')

# $1 option_file as written ('~/' = the login's home on the host): prints its path, or fails if unreadable
FIND_OPTION_FILE = 'f=$1; case $f in "~/"*) f=$HOME/${f#??};; esac; [ -f "$f" ] && [ -r "$f" ] && printf %s "$f"'


def database_url(db: Database) -> str:
    cred = quote(db.user, safe="")
    if db.password_env:
        cred += ":" + quote(db.password(), safe="")
    return f"mysql://{cred}@{db.host}:{db.port}/{quote(db.dbname, safe='')}"


def host_option_file(t: Transport, db: Database) -> str:
    """The user's option file on the host, which the tool never reads: its password stays on the host.
    Checked first, since the client silently ignores an !include it cannot read."""
    code, out, _ = t.call(["sh", "-c", FIND_OPTION_FILE, "sh", db.option_file])
    if code != 0 or not out:
        raise StepError(f"[database:{db.name}] option_file {db.option_file}: no readable file on {t.host}; "
                        "put the MySQL option file there (mode 0600) or fix option_file")
    return out


def filter_source() -> str:
    """The text of the host-side filter (hostside/dumpfilter.py), sent with `python3 -c` (the host needs
    nothing of this tool)."""
    return script("dumpfilter.py")


def streams(t: Transport) -> bool:
    """Can this host run the one-pass filter (python3 with its standard library)? Answered by the option
    file's exchange when it asked (client_options' reads), else asked now."""
    return t.call_kept(HAS_PYTHON)[0] == 0


def counts(t: Transport, db: Database, cnf: str) -> dict[str, int]:
    out = t.run(["mysql", f"--defaults-extra-file={cnf}", "-N", "-B", "-e", ROW_COUNTS_SQL, "--", db.dbname])
    return parse_row_counts(out)


def credentials(db: Database) -> tuple[str, str]:
    """(user, password) of a password_env database, kept in memory only. Refuses an option_file one: this
    machine never reads the option file (the rehearsal probes such a database on the host)."""
    if not db.password_env:
        raise ValueError(f"[database:{db.name}] has no password_env: its option_file stays on the hosts, "
                         "and this machine does not read it")
    return db.user, db.password()


def connect(host: str, port: int, db: Database, user: str, password: str):
    import mysql.connector
    return mysql.connector.connect(host=host, port=port, user=user, password=password, database=db.dbname,
                                   use_pure=True, autocommit=True, connection_timeout=10)


class MySQL(Engine):
    name = "mysql"
    backup_ext = ".sql.gz"
    bounded_lock_waits = True
    probe = rehearsal_probe
    host_password_key = "option_file"

    def app_env(self, db: Database) -> dict[str, str]:
        env = {"DATABASE_URL": database_url(db)}
        if db.option_file:
            env["DATABASE_OPTION_FILE"] = db.option_file
        return env

    @contextlib.contextmanager
    def client_options(self, t: Transport, layout: Layout, db: Database, reads: Sequence[Sequence[str]] = ()):
        """A 0600 option file in a 0700 temp dir on the host, removed afterwards: the password never travels
        on a command line. With option_file, it !includes the user's file (which holds the password) and adds
        host, port and user from stages.ini after it. The server's "Access denied" to any client run with it
        comes out as what to fix (access_denied). reads: asked in the same exchange, answers kept (secret_file)."""
        with _hinted(t, db):
            with secret_file(t, layout, "my.cnf", _options(t, db), reads) as path:
                yield path

    def _run_once(self, t: Transport, layout: Layout, db: Database, argv_of: Callable[[str], list[str]]) -> str:
        """One short client command with client_options' file, all in one exchange (secret_call); its stdout."""
        with _hinted(t, db):
            return secret_call(t, layout, "my.cnf", _options(t, db), argv_of)

    def backup_source(self, db: Database) -> str:
        return f"{db.dbname}@{db.host}:{db.port}"

    def dump(self, t: Transport, layout: Layout, db: Database, partial: str) -> dict:
        """Dump, compress and check. Returns sha256, size and the row counts (tables; without the filter also
        tables_after: COUNT(*) before and after the dump, which a restore's counts must lie between)."""
        with self.client_options(t, layout, db, [HAS_PYTHON]) as cnf:
            if streams(t):
                out = run_streaming(t, ["bash", "-c", MYSQLDUMP_STREAM, "bash", cnf, db.dbname, partial,
                                        filter_source()], f"backup:{db.name}")
                got = json.loads(out.strip().splitlines()[-1])
                return {"sha256": got["sha256"], "size": got["size"], "sql_bytes": got["sql_bytes"],
                        "tables": got["tables"], "counted": "dump"}
            before = counts(t, db, cnf)
            t.run(["bash", "-c", MYSQLDUMP, "bash", cnf, db.dbname, partial])
            after = counts(t, db, cnf)
        sha, size = verify_file(t, partial, self.name)
        return {"sha256": sha, "size": size, "tables": before, "tables_after": after, "counted": "count"}

    def row_counts(self, t: Transport, layout: Layout, db: Database) -> dict[str, int]:
        with self.client_options(t, layout, db) as cnf:
            return counts(t, db, cnf)

    def load_backup(self, t: Transport, layout: Layout, db: Database, meta: dict, path: str,
                    lock_wait: int | None = None, protected=()) -> dict[str, int]:
        """With python3 on the host, one process reads the file: it hashes it first, then decompresses it
        straight into `mysql`, after the DROP DATABASE; CREATE DATABASE; USE it sends itself."""
        init = f"SET SESSION lock_wait_timeout = {int(lock_wait)}" if lock_wait else ""
        with self.client_options(t, layout, db, [HAS_PYTHON, list_leftovers(layout).argv]) as cnf:
            sweep_leftovers(t, layout)   # its read came with the option file's exchange
            if streams(t):
                _load_streaming(t, db, meta, path, cnf, init)
            else:
                check_sha(t, meta, path)
                name = "`" + db.dbname.replace("`", "``") + "`"
                t.run(["mysql", f"--defaults-extra-file={cnf}", *([f"--init-command={init}"] if init else []),
                       "-e", f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"])
                t.run(["bash", "-c", MYSQL_LOAD, "bash", path, cnf, db.dbname, init])
            return counts(t, db, cnf)

    def server_identity(self, t: Transport, layout: Layout, db: Database) -> tuple:
        out = self._run_once(t, layout, db, lambda cnf: ["mysql", f"--defaults-extra-file={cnf}", "-N", "-B", "-e",
                                                         SERVER_IDENTITY_SQL])
        try:
            return ("mysql", *parse_server_identity(out), db.dbname)
        except ValueError as exc:
            raise StepError(f"{t.host}: [database:{db.name}]: {exc}") from None

    def describe_identity(self, ident: tuple) -> str:
        return f"{ident[-1]} on {ident[1]}:{ident[2]}"

    def access_denied(self, db: Database, text: str) -> str | None:
        return access_denied(db, text)

    def reads_copy_on_host(self, db: Database) -> bool:
        """A database whose password this machine does not have (option_file): read it on the host."""
        return not db.password_env

    def copy_columns(self, rows: list) -> dict[str, dict[str, Column]]:
        return columns_from_mysql(rows)

    def copy_connector(self, db: Database, host: str, port: int) -> Callable[[], object]:
        user, password = credentials(db)
        return lambda: connect(host, port, db, user, password)


def _options(t: Transport, db: Database) -> bytes:
    """The option file's bytes (with option_file: !include of the user's file, found on the host first)."""
    include = host_option_file(t, db) if db.option_file and not db.password_env else None
    try:
        return option_file(db, include)
    except ValueError as exc:
        raise StepError(str(exc)) from None


def _hinted(t: Transport, db: Database):
    """The server's "Access denied" to a client run with our option file, as what to fix (access_denied)."""
    return told_as(t, lambda text: access_denied(db, text))


def _load_streaming(t: Transport, db: Database, meta: dict, path: str, cnf: str, init: str = "") -> None:
    try:
        run_streaming(t, ["bash", "-c", MYSQL_LOAD_STREAM, "bash", path, cnf, db.dbname, meta["sha256"],
                          filter_source(), init], f"restore:{db.name}")
    except CommandFailed as exc:
        why = last_line(exc.stderr, str(exc))
        if exc.retcode == DAMAGED:
            raise StepError(f"{t.host}: backup {meta['file']} is damaged ({why}); {db.name} was not changed: "
                            f"take a new backup (doit backup:{meta['database']})") from None
        raise StepError(f"{t.host}: restore of {meta['file']} into {db.name} failed ({why}); the database is "
                        "not usable") from None
