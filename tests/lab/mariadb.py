"""MariaDB: `MariaDB()` talks to 127.0.0.1:3306 as root with no password (mysql-connector-python, pure).
`write_option_file()` writes a [client] file for the mariadb / mysqldump command-line tools."""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from .common import HarnessError

MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    if not name or "\x00" in name:
        raise ValueError(f"bad identifier {name!r}")
    return "`" + name.replace("`", "``") + "`"


def option_file_value(value: str) -> str:
    """A value for a MariaDB/MySQL option file, as the command-line tools read it (mysys my_default.c,
    checked here with mariadb and mysqldump 10.11):

      * the reader trims whitespace around the value, then strips ONE pair of matching quotes
        ('...' or "...") around it;
      * '#' starts a comment unless it is inside quotes ('...' or "..."); ';' is a comment only at the
        start of a line, so it is harmless inside a value;
      * backslash escapes are decoded in the (unquoted) value: \\\\ \\" \\' \\n \\t \\r \\b \\s (space);
        an unknown one like \\x is kept as is. Within quotes, \\" does not end the quoted part.

    So: wrap in double quotes and escape backslash and double quote (\\ -> \\\\, " -> \\"). That keeps
    spaces at the ends, ; # ' ` $( ) and backslashes. Verified for NASTY_PASSWORD and for 'a#b', ' lead',
    'trail ', "'quoted'", 'a\\nb', 'ab\\', '#'. Unquoted fails for '#', edge spaces, and backslash pairs.
    A line break cannot be written at all (a value is one line): refused.
    mysql-connector-python's own option_files= reader is different: it keeps the quotes and decodes no
    escapes (a quoted password is refused there), so these files are for the command-line tools."""
    if any(c in value for c in "\n\r\x00"):
        raise ValueError("an option-file value cannot hold a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_option_file(path: str | os.PathLike, user: str, password: str | None,
                      host: str = MARIADB_HOST, port: int = MARIADB_PORT, database: str | None = None,
                      owner: str | None = None) -> Path:
    """A [client] option file for `mariadb` / `mysqldump --defaults-extra-file=F` (which must be the
    FIRST option), mode 0600 from the start (never readable by others, even for a moment)."""
    path = Path(path)
    lines = ["[client]", f"user={option_file_value(user)}"]
    if password is not None:
        lines.append(f"password={option_file_value(password)}")
    lines += [f"host={option_file_value(host)}", f"port={int(port)}"]
    if database:
        lines.append(f"database={option_file_value(database)}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write("\n".join(lines) + "\n")
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.replace(tmp, path)
    return path


class MariaDB:
    """Root access to the test MariaDB (127.0.0.1:3306, root, no password), one connection a call."""

    def __init__(self, host: str = MARIADB_HOST, port: int = MARIADB_PORT, user: str = "root",
                 password: str = ""):
        self.host, self.port, self.user, self.password = host, port, user, password

    def connect(self, database: str | None = None, user: str | None = None, password: str | None = None):
        import mysql.connector
        kwargs = dict(host=self.host, port=self.port, user=user or self.user,
                      password=self.password if password is None else password,
                      use_pure=True, autocommit=True, connection_timeout=5)
        if database:
            kwargs["database"] = database
        return mysql.connector.connect(**kwargs)

    def ensure_running(self, timeout: float = 30) -> str:
        """Answer with the server's version, starting mariadbd (as the machine's own service is started)
        if nothing answers; a clear HarnessError if it cannot be had."""
        try:
            return self.version()
        except Exception as first:
            error = first
        if os.geteuid() == 0 and os.access("/usr/sbin/mariadbd", os.X_OK):
            Path("/run/mysqld").mkdir(exist_ok=True)
            shutil.chown("/run/mysqld", "mysql", "mysql")
            subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                            "/usr/sbin/mariadbd"], capture_output=True, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    return self.version()
                except Exception as e:
                    error = e
                    time.sleep(0.25)
        raise HarnessError(f"MariaDB does not answer at {self.host}:{self.port} as {self.user} with no "
                           f"password ({error}); ./scripts/test installs and starts it")

    def version(self) -> str:
        return self.query(None, "SELECT VERSION()")[0][0]

    def query(self, db: str | None, sql: str, params: Sequence | dict | None = None) -> list[tuple]:
        """Run one statement (in db, if given); its rows ([] for a statement without a result set)."""
        con = self.connect(db)
        try:
            cur = con.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.with_rows else []
            cur.close()
            return rows
        finally:
            con.close()

    def databases(self) -> list[str]:
        return [r[0] for r in self.query(None, "SHOW DATABASES")]

    def database_exists(self, name: str) -> bool:
        return bool(self.query(None, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                               (name,)))

    def create_database(self, name: str, *, replace: bool = False) -> None:
        if replace:
            self.drop_database(name)
        self.query(None, f"CREATE DATABASE {_ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")

    def drop_database(self, name: str) -> None:
        self.query(None, f"DROP DATABASE IF EXISTS {_ident(name)}")

    def create_user(self, user: str, password: str, dbs: Iterable[str] | str = (),
                    privileges: str = "ALL") -> None:
        """user@'127.0.0.1' and user@'localhost' (TCP and socket clients), replacing an existing one,
        with `privileges` on each of dbs."""
        if isinstance(dbs, str):
            dbs = [dbs]
        if not re.fullmatch(r"[A-Za-z ,_]+", privileges):
            raise ValueError(f"privileges {privileges!r}")
        for host in ("127.0.0.1", "localhost"):
            self.query(None, "CREATE OR REPLACE USER %s@%s IDENTIFIED BY %s", (user, host, password))
            for db in dbs:
                self.query(None, f"GRANT {privileges} ON {_ident(db)}.* TO %s@%s", (user, host))

    def drop_user(self, user: str) -> None:
        for host in ("127.0.0.1", "localhost"):
            self.query(None, "DROP USER IF EXISTS %s@%s", (user, host))

    def tables(self, db: str) -> list[str]:
        """Base tables of db (no views), sorted."""
        return sorted(r[0] for r in self.query(
            None, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                  "AND TABLE_TYPE = 'BASE TABLE'", (db,)))

    def row_counts(self, db: str) -> dict[str, int]:
        """{table: COUNT(*)} of every base table (real counts, not information_schema estimates)."""
        con = self.connect(db)
        try:
            cur = con.cursor()
            counts = {}
            for t in self.tables(db):
                cur.execute(f"SELECT COUNT(*) FROM {_ident(t)}")
                counts[t] = int(cur.fetchone()[0])
            cur.close()
            return counts
        finally:
            con.close()

    def checksums(self, db: str) -> dict[str, int | None]:
        """{table: CHECKSUM TABLE} of every base table: equal data gives equal numbers."""
        tables = self.tables(db)
        if not tables:
            return {}
        rows = self.query(db, "CHECKSUM TABLE " + ", ".join(_ident(t) for t in tables))
        return {name.split(".", 1)[1]: value for name, value in rows}

    def client_argv(self, option_file: str | os.PathLike, *args: str, tool: str = "mariadb") -> list[str]:
        """argv for a command-line tool with an option file: --defaults-extra-file comes FIRST."""
        return [tool, f"--defaults-extra-file={option_file}", *args]


class Forward:
    """127.0.0.1:<port> -> 127.0.0.1:<to> (3306; PostgreSQL's: 5432): another address for the same server
    (a thread of this process)."""

    def __init__(self, to: int = 3306):
        self.to = to
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            server = socket.create_connection(("127.0.0.1", self.to))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.sock.close()
