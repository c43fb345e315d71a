"""The one pass over a dump, run ON THE HOST: `python3 -c <this file's text> dump|restore ...`.

Standard library only, Python >= 3.6: it is sent as text and imports nothing of the tool.

dump <partial> [level] [mysql|postgresql]: reads mysqldump's (or pg_dump's plain) output on stdin once and,
  as it streams by, compresses it (gzip format, zlib level 1 by default: any gunzip reads it), hashes the
  compressed bytes (sha256), decompresses them again to check the CRC (the file's gzip integrity, checked
  from the very bytes written), counts the rows of every table (mysql: from the INSERT statements;
  postgresql: the data lines of each COPY ... FROM stdin block), and keeps the last bytes for the
  completion line. Writes <partial> (0600, created new) and prints one JSON line: sha256, size, sql_bytes,
  tables. Exit 4 when the dump is incomplete or the check fails (nothing printed on stdout then).
restore <file> <sha256> [mysql <database> | postgresql <database> <owner> [<sysid>:<oid>:<index>...]]:
  hashes the file first (exit 5, nothing written, when it is damaged), then decompresses it to stdout (for
  `| mysql` or `| psql`), checking the gzip CRC and end. With `mysql`, it first writes DROP DATABASE, CREATE
  DATABASE and USE of <database> (so the database is dropped only once the file is known good) and checks
  the completion line at the end. With `postgresql` (psql connected to a maintenance database): on line 1,
  the role's CREATEDB checked and the database checked to have none of the identities given (pg_protected);
  then DROP DATABASE ... WITH (FORCE), CREATE DATABASE ... OWNER <owner>, \\connect to it and BEGIN; COMMIT
  only after the completion line was seen, so a dump cut short loads nothing.
Both write `progress <done> <total> <rows>` lines on stderr about once a second.
"""
import hashlib
import json
import os
import re
import sys
import threading
import time
import zlib

CHUNK = 1 << 20
TAIL = 4096
COMPLETED = b"-- Dump completed"
PG_COMPLETED = b"-- PostgreSQL database dump complete"
# before the DROP: a role that may not create the database again is refused while it still stands (the
# same check as engines/postgresql.py CAN_CREATE)
PG_CAN_CREATE = ("DO $$BEGIN IF NOT (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) "
                 "THEN RAISE EXCEPTION 'permission denied to create database (role % lacks CREATEDB)', "
                 "current_user; END IF; END$$")
# on the same line, before the DROP: the database about to be dropped is none of those it must never drop
# (restore.py's protected databases: the source, a live stage's), asked in the DROP's own session; the same
# check as engines/postgresql.py PROTECTED. %(db)s is a name PG_NAME allows; each %s below: "<system
# identifier>:<oid>:<index>", digits only
PG_PROTECTED = ("DO $$BEGIN IF (SELECT system_identifier FROM pg_control_system()) = %s AND "
                "(SELECT oid FROM pg_database WHERE datname = '%s') = %s THEN "
                "RAISE EXCEPTION 'doit-stages: protected database %s'; END IF; END$$")
PG_IDENTITY = re.compile(r"(\d{1,20}):(\d{1,10}):(\d{1,3})")
# what stages.ini allows of a database's name and of a role's (config/rules.py)
PG_NAME = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$-]{0,62}")
PG_ROLE = re.compile(r"[A-Za-z0-9_.$@+][A-Za-z0-9_.$@+-]{0,62}")


class _Lines:
    """Fed in arbitrary chunks; _scan(buf, end) sees complete lines only. The carry keeps the last newline
    (and starts as one): every pattern a subclass looks for starts with a newline."""

    def feed(self, data):
        buf = self._carry + data
        cut = buf.rfind(b"\n")
        if cut <= 0:
            self._carry = buf
            return
        self._scan(buf, cut)
        self._carry = buf[cut:]


class RowCounter(_Lines):
    """Rows per table from mysqldump's INSERT statements, fed in arbitrary chunks.

    A string in a dump never holds a raw newline (mysqldump escapes it), so a statement ends at the first
    ");\\n" after its header. MariaDB's mysqldump writes one row a line after `VALUES` (each row line starts
    with "("); MySQL's writes all rows on the header's line: there the rows are the "),(" left after the
    quoted strings are taken out. Tables with no INSERT count 0 (from their CREATE TABLE). Routine and
    trigger bodies (between `DELIMITER ;;` and `DELIMITER ;`) are skipped: their SQL is not data."""
    INSERT = b"\nINSERT INTO `"
    CREATE = b"\nCREATE TABLE `"
    ROUTINES = b"\nDELIMITER ;;\n"
    ROUTINES_END = b"\nDELIMITER ;\n"
    NAME = re.compile(rb"((?:[^`\n]|``)+)`")
    STRINGS = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'")

    def __init__(self):
        self.counts = {}
        self.rows = 0
        self._carry = b"\n"      # a newline first: a header on the stream's first line is found too
        self._table = None       # inside a one-row-a-line INSERT of this table
        self._routines = False   # inside a DELIMITER ;; block


    def _scan(self, buf, end):
        pos, found = 0, {}
        while pos < end:
            if self._routines:
                stop = buf.find(self.ROUTINES_END, pos, end + 1)
                if stop < 0:
                    return
                self._routines, pos = False, stop + len(self.ROUTINES_END) - 1
                continue
            if self._table is not None:
                stop = buf.find(b");\n", pos, end + 1)
                self._add(self._table, buf.count(b"\n(", pos, end if stop < 0 else stop))
                if stop < 0:
                    return
                self._table, pos = None, stop + 2
                continue
            for token in (self.INSERT, self.CREATE, self.ROUTINES):
                known = found.get(token)
                if known is None or 0 <= known < pos:      # -1: no more in this buffer
                    found[token] = buf.find(token, pos, end + 1)
            hits = sorted((p, t) for t, p in found.items() if p >= 0)
            if not hits:
                return
            at, token = hits[0]
            pos = at + 1
            if token is self.ROUTINES:
                self._routines, pos = True, at + len(self.ROUTINES) - 1
            elif token is self.CREATE:
                m = self.NAME.match(buf, at + len(token))
                if m and buf.startswith(b" (", m.end()):
                    self.counts.setdefault(self._decode(m.group(1)), 0)
            else:
                pos = self._insert(buf, at + len(token), end, pos)

    def _insert(self, buf, start, end, pos):
        m = self.NAME.match(buf, start)
        if not m or not buf.startswith(b" VALUES", m.end()):
            return pos
        table, after = self._decode(m.group(1)), m.end() + len(b" VALUES")
        if buf.startswith(b"\n", after):
            self._table = table
            return after
        stop = buf.find(b");\n", after, end + 1)
        if stop < 0:
            return pos
        self._add(table, 1 + self.STRINGS.sub(b"", buf[after:stop + 1]).count(b"),("))
        return stop + 2

    @staticmethod
    def _decode(raw):
        return raw.replace(b"``", b"`").decode("utf-8", "replace")

    def _add(self, table, n):
        self.counts[table] = self.counts.get(table, 0) + n
        self.rows += n


class PgRowCounter(_Lines):
    """Rows per table from pg_dump's plain output, fed in arbitrary chunks: each table's data is a block
    `COPY schema.table (columns) FROM stdin;`, one line a row (COPY's text format escapes a newline, a tab
    and a backslash in a value), ended by a line `\\.`. pg_dump writes a block for every table it dumps,
    empty or not. A table outside the schema public is named schema.table, as pg_sql.ROW_COUNTS names it."""
    COPY = b"\nCOPY "
    END = b"\n\\.\n"
    IDENT = rb'"(?:[^"]|"")+"|[^\s."(]+'
    HEADER = re.compile(rb"(" + IDENT + rb")\.(" + IDENT + rb")(?: \([^\n]*\))? FROM stdin;\n")

    def __init__(self):
        self.counts = {}
        self.rows = 0
        self._carry = b"\n"
        self._table = None       # inside this table's COPY block


    def _scan(self, buf, end):
        pos = 0
        while pos < end:
            if self._table is not None:
                # pos is at the newline that ends the header or the last row counted
                stop = buf.find(self.END, pos, end + 1)
                self._add(self._table, buf.count(b"\n", pos, end if stop < 0 else stop))
                if stop < 0:
                    return
                self._table, pos = None, stop + len(self.END) - 1
                continue
            at = buf.find(self.COPY, pos, end + 1)
            if at < 0:
                return
            m = self.HEADER.match(buf, at + len(self.COPY))
            if not m:
                pos = at + 1
                continue
            schema, table = self._name(m.group(1)), self._name(m.group(2))
            self._table = table if schema == "public" else schema + "." + table
            self.counts.setdefault(self._table, 0)
            pos = m.end() - 1

    @staticmethod
    def _name(raw):
        if raw.startswith(b'"'):
            raw = raw[1:-1].replace(b'""', b'"')
        return raw.decode("utf-8", "replace")

    def _add(self, table, n):
        self.counts[table] = self.counts.get(table, 0) + n
        self.rows += n


def completed(tail, engine="mysql"):
    """Does the SQL end with the dump tool's completion line? (pg_dump's may be followed by `--` lines and
    the `\\unrestrict <key>` that ends its restricted mode)"""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    if engine == "postgresql":
        while lines and (lines[-1] == b"--" or lines[-1].startswith(b"\\unrestrict ")):
            lines.pop()
        return bool(lines) and lines[-1] == PG_COMPLETED
    return bool(lines) and lines[-1].startswith(COMPLETED)


DUMPERS = {"mysql": ("mysqldump", "'-- Dump completed'"),
           "postgresql": ("pg_dump", "'-- PostgreSQL database dump complete'")}


class Progress:
    def __init__(self, total=0, out=sys.stderr, every=1.0):
        self.total, self.out, self.every = total, out, every
        self._next = time.monotonic() + every

    def tick(self, done, rows=0):
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            self.out.write("progress %d %d %d\n" % (done, self.total, rows))
            self.out.flush()


class Compressor:
    """gzip members from zlib (no name, mtime 0, as gzip -n), sha256 of the compressed bytes, and the
    compressed bytes inflated again: their CRC and length must give back what went in."""

    def __init__(self, out, level=1):
        self.out = out
        self.deflate = zlib.compressobj(level, zlib.DEFLATED, 31)
        self.inflate = zlib.decompressobj(31)
        self.sha = hashlib.sha256()
        self.size = self.sql_bytes = self.checked = 0

    def write(self, data):
        self.sql_bytes += len(data)
        self._emit(self.deflate.compress(data))

    def close(self):
        self._emit(self.deflate.flush())
        if not self.inflate.eof or self.inflate.unused_data or self.checked != self.sql_bytes:
            raise ValueError("the compressed dump does not decompress to what went in")
        return self.sha.hexdigest()

    def _emit(self, z):
        if z:
            self.out.write(z)
            self.sha.update(z)
            self.size += len(z)
            self.checked += len(self.inflate.decompress(z))


def dump(partial, level=1, src=None, progress=None, engine="mysql"):
    src = src or sys.stdin.buffer
    progress = progress or Progress()
    if engine not in DUMPERS:
        raise ValueError("unknown engine %r" % engine)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    counter, tail = (PgRowCounter() if engine == "postgresql" else RowCounter()), b""
    with os.fdopen(fd, "wb") as f:
        comp = Compressor(f, level)
        work = _Worker(comp.write)
        for data in iter(lambda: src.read(CHUNK), b""):
            work.put(data)
            counter.feed(data)
            tail = data[-TAIL:] if len(data) >= TAIL else (tail + data)[-TAIL:]
            progress.tick(comp.sql_bytes, counter.rows)
        work.finish()
        sha = comp.close()
    counter.feed(b"\n")
    if not completed(tail, engine):
        raise ValueError("the dump is incomplete: it does not end with %s's %s line" % DUMPERS[engine])
    if os.stat(partial).st_size != comp.size:
        raise ValueError("the dump file on disk is not as long as what was written")
    return {"sha256": sha, "size": comp.size, "sql_bytes": comp.sql_bytes, "tables": counter.counts}


class _Worker:
    """Compression in a second thread (zlib and hashlib let go of the GIL), so reading and counting go on."""

    def __init__(self, fn):
        self.fn, self.error, self.slots = fn, None, threading.Semaphore(4)
        self.queue, self.ready = [], threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, data):
        self.slots.acquire()
        with self.ready:
            self.queue.append(data)
            self.ready.notify()

    def finish(self):
        self.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self):
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                data = self.queue.pop(0)
            self.slots.release()
            if data is None:
                return
            if self.error is None:
                try:
                    self.fn(data)
                except Exception as exc:  # reported by finish()
                    self.error = exc


class Damaged(ValueError):
    """The file is not the one the metadata describes; nothing was written."""


def quote_name(name):
    return "`" + name.replace("`", "``") + "`"


def pg_protected(database, protected):
    """The checks, on one line, that `database` is none of `protected` ("<system identifier>:<oid>:<index>"
    each): the index names it in the refusal."""
    checks = []
    for p in protected:
        m = PG_IDENTITY.fullmatch(p)
        if not m or not PG_NAME.fullmatch(database):
            raise ValueError("%r is not a server identity" % (p,))
        checks.append(PG_PROTECTED % (m.group(1), database, m.group(2), m.group(3)) + ";")
    return " ".join(checks)


def pg_prologue(database, owner, protected=()):
    """psql's input before the dump (psql runs in a maintenance database): the role's CREATEDB checked
    (line 1), the database dropped (line 2) and made again, owned by `owner`, then entered, and a
    transaction begun (COMMIT follows the dump's last line). From there on psql prints every query it sends
    and every command's tag (psql runs -q): the rows each COPY stored, after its `COPY ... FROM stdin;`, are
    the restore's row counts (pg_sql.parse_copy_tags), with no COUNT(*) pass over the loaded tables.
    protected: identities the database must not have (pg_protected), checked on line 1 with CREATEDB."""
    if not PG_NAME.fullmatch(database) or not PG_ROLE.fullmatch(owner):
        raise ValueError("%r or %r is not a name stages.ini allows" % (database, owner))
    guard = (" " + pg_protected(database, protected)) if protected else ""
    return (PG_CAN_CREATE + ';' + guard + '\n'
            'DROP DATABASE IF EXISTS "%s" WITH (FORCE);\nCREATE DATABASE "%s" OWNER "%s";\n'
            "\\connect -reuse-previous=on 'dbname=%s'\nBEGIN;\n\\set QUIET off\n\\set ECHO queries\n"
            % (database, database, owner, database)).encode()


def restore(path, expected, out=None, progress=None, prologue=b""):
    out = out or sys.stdout.buffer
    total = os.stat(path).st_size
    progress = progress or Progress(total)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
    if sha.hexdigest() != expected:
        raise Damaged("sha256 %s, the backup's metadata says %s: the file is damaged" % (sha.hexdigest(), expected))
    out.write(prologue)
    inflate, fed, tail, done = zlib.decompressobj(31), False, b"", 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            done += len(block)
            while block:
                data = inflate.decompress(block)
                fed = True
                out.write(data)
                tail = data[-TAIL:] if len(data) >= TAIL else (tail + data)[-TAIL:]
                block = b""
                if inflate.eof:  # gzip allows several members one after the other
                    block, inflate, fed = inflate.unused_data, zlib.decompressobj(31), False
            progress.tick(done)
    if not done or (fed and not inflate.eof):
        raise ValueError("the backup file ends in the middle of its gzip stream")
    out.flush()
    return tail


def main(argv):
    try:
        if argv[0] == "dump":
            meta = dump(argv[1], int(argv[2]) if len(argv) > 2 else 1,
                        engine=argv[3] if len(argv) > 3 else "mysql")
            sys.stdout.write(json.dumps(meta, sort_keys=True) + "\n")
        elif argv[0] == "restore":
            engine = argv[3] if len(argv) > 3 else ""
            if engine == "mysql":
                name = quote_name(argv[4])
                prologue = ("DROP DATABASE IF EXISTS %s;\nCREATE DATABASE %s;\nUSE %s;\n" % (name, name, name)).encode()
            elif engine == "postgresql":
                prologue = pg_prologue(argv[4], argv[5], argv[6:])
            else:
                prologue = b""
            tail = restore(argv[1], argv[2], prologue=prologue)
            if engine and not completed(tail, engine):
                raise ValueError("the backup does not end with %s's %s line" % DUMPERS[engine])
            if engine == "postgresql":
                sys.stdout.buffer.write(b"\nCOMMIT;\n")
                sys.stdout.buffer.flush()
        else:
            raise ValueError("usage: dump <partial> [level] [mysql|postgresql] | restore <file> <sha256> "
                             "[mysql <database> | postgresql <database> <owner> [<sysid>:<oid>:<index>...]]")
    except Damaged as exc:
        sys.stderr.write("%s\n" % exc)
        return 5
    except (ValueError, OSError, zlib.error) as exc:
        sys.stderr.write("%s\n" % exc)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
