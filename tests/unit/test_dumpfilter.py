"""The one-pass dump filter (tasks/hostside/dumpfilter.py) on plain inputs: rows counted from the dump as it
streams, the completion line, the compressed and hashed output. No host, no server (the filter run as the
hosts run it: tests/integration/test_dumpfilter.py)."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
from pathlib import Path

import pytest

from doit_stages.hostside import dumpfilter
from doit_stages.hostside.dumpfilter import Compressor, RowCounter, completed

# MariaDB 10.11's mysqldump: one row a line after VALUES. Strings hold "),(", ");", quotes, backslashes.
MARIADB = (Path(__file__).parents[1] / "fixtures" / "dump_mariadb.sql").read_bytes()
# MySQL's mysqldump: every row of a statement on the header's line.
MYSQL = rb"""CREATE TABLE `t` (
  `id` int NOT NULL
);
INSERT INTO `t` VALUES (1,'a),(b'),(2,'c\'),(\'d'),(3,0x2C28),(4,'it''s),(');
INSERT INTO `t` VALUES (5,'x');
-- Dump completed on 2026-11-27 17:41:33
"""


def counts(data: bytes, step: int) -> dict:
    c = RowCounter()
    for i in range(0, len(data), step):
        c.feed(data[i:i + step])
    c.feed(b"\n")
    return c.counts


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_rows_counted_from_one_row_a_line_inserts_at_any_chunk_size(step):
    # the INSERT and the "(" line in the routine's body are not data
    assert counts(MARIADB, step) == {"posts_post": 6, "empty": 0, "we`ird": 1}


@pytest.mark.parametrize("step", [1, 5, 10_000])
def test_rows_counted_from_mysql_single_line_inserts(step):
    assert counts(MYSQL, step) == {"t": 5}


def test_completion_line():
    assert completed(b"x\n-- Dump completed on 2026-11-27 17:41:33\n")
    assert completed(b"-- Dump completed on 2026-11-27\n\n\n")
    assert not completed(b"INSERT INTO `t` VALUES\n(1);\n")
    assert not completed(b"")


def test_compressor_output_is_plain_gzip_and_hashed():
    out = io.BytesIO()
    comp = Compressor(out)
    for part in (MARIADB[:100], MARIADB[100:], b"", MARIADB):
        comp.write(part)
    sha = comp.close()
    data = out.getvalue()
    assert gzip.decompress(data) == MARIADB * 2
    assert sha == hashlib.sha256(data).hexdigest() and comp.size == len(data)


def test_dump_writes_a_checked_0600_file(tmp_path):
    partial = tmp_path / "x.partial"
    meta = dumpfilter.dump(str(partial), src=io.BytesIO(MARIADB), progress=dumpfilter.Progress(out=io.StringIO()))
    data = partial.read_bytes()
    assert os.stat(partial).st_mode & 0o777 == 0o600
    assert gzip.decompress(data) == MARIADB
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["size"] == len(data)
    assert meta["tables"]["posts_post"] == 6 and meta["sql_bytes"] == len(MARIADB)


def test_dump_without_completion_line_is_refused(tmp_path):
    cut = MARIADB[:MARIADB.index(b"-- Dump completed")]
    with pytest.raises(ValueError, match="incomplete"):
        dumpfilter.dump(str(tmp_path / "x.partial"), src=io.BytesIO(cut),
                        progress=dumpfilter.Progress(out=io.StringIO()))


def test_dump_never_overwrites_an_existing_file(tmp_path):
    (tmp_path / "x.partial").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        dumpfilter.dump(str(tmp_path / "x.partial"), src=io.BytesIO(MARIADB))


# -- PostgreSQL: pg_dump's plain format ------------------------------------------------------------------
# pg_dump 15.20's shape: COPY blocks (one line a row, \. ends one), quoted odd names, a schema, a value that
# reads like the end marker (COPY escapes its backslash), a function whose body holds a COPY-like line,
# the completion comment and the \unrestrict line after it.
PG_DUMP = rb"""--
-- PostgreSQL database dump
--

\restrict k3y

SET lock_timeout = 0;
CREATE FUNCTION public.f() RETURNS text
    LANGUAGE sql
    AS $$SELECT 'COPY x'$$;

--
-- Data for Name: Odd.Name; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public."Odd.Name" (x) FROM stdin;
\.


COPY public.t (id, s) FROM stdin;
1	a\nb
2	\\.
3	c\\
\.


COPY extra."we""ird" (y) FROM stdin;
1
\.


COPY public.empty FROM stdin;
\.


SELECT pg_catalog.setval('public.t_id_seq', 3, true);

--
-- PostgreSQL database dump complete
--

\unrestrict k3y

"""


def pg_counts(data: bytes, step: int) -> dict:
    c = dumpfilter.PgRowCounter()
    for i in range(0, len(data), step):
        c.feed(data[i:i + step])
    c.feed(b"\n")
    return c.counts


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64, 10_000])
def test_pg_rows_counted_from_copy_blocks_at_any_chunk_size(step):
    assert pg_counts(PG_DUMP, step) == {"Odd.Name": 0, "t": 3, 'extra.we"ird': 1, "empty": 0}


def test_pg_completion_line_may_be_followed_by_its_unrestrict_line():
    assert completed(PG_DUMP, "postgresql")
    assert completed(PG_DUMP.replace(b"\\unrestrict k3y\n", b""), "postgresql")           # older pg_dump
    assert not completed(PG_DUMP[:PG_DUMP.index(b"-- PostgreSQL database dump complete")], "postgresql")
    assert not completed(PG_DUMP + b"COPY public.t (id) FROM stdin;\n", "postgresql")
    assert not completed(PG_DUMP, "mysql") and not completed(MYSQL, "postgresql")


def test_pg_dump_writes_a_checked_0600_file(tmp_path):
    partial = tmp_path / "x.partial"
    meta = dumpfilter.dump(str(partial), src=io.BytesIO(PG_DUMP), progress=dumpfilter.Progress(out=io.StringIO()),
                           engine="postgresql")
    assert meta["tables"] == {"Odd.Name": 0, "t": 3, 'extra.we"ird': 1, "empty": 0}
    assert gzip.decompress(partial.read_bytes()) == PG_DUMP and os.stat(partial).st_mode & 0o777 == 0o600
    cut = tmp_path / "cut.partial"
    with pytest.raises(ValueError, match="pg_dump's '-- PostgreSQL database dump complete' line"):
        dumpfilter.dump(str(cut), src=io.BytesIO(PG_DUMP[:300]), progress=dumpfilter.Progress(out=io.StringIO()),
                        engine="postgresql")


def test_pg_prologue_checks_createdb_before_the_drop_and_refuses_other_names():
    text = dumpfilter.pg_prologue("blog_prod", "blog.user@x").decode()
    lines = text.splitlines()
    assert lines[0].startswith("DO $$BEGIN IF NOT (SELECT rolcreatedb OR rolsuper") and "CREATEDB" in lines[0]
    assert lines[1:] == ['DROP DATABASE IF EXISTS "blog_prod" WITH (FORCE);',
                         'CREATE DATABASE "blog_prod" OWNER "blog.user@x";',
                         "\\connect -reuse-previous=on 'dbname=blog_prod'", "BEGIN;",
                         "\\set QUIET off", "\\set ECHO queries"]   # the dump's tags: its row counts
    from doit_stages.engines.postgresql import CAN_CREATE
    assert lines[0] == CAN_CREATE + ";"                     # the same check as the python-less restore's
    for db, owner in (('a"b', "u"), ("a'b", "u"), ("ok", 'u"; DROP'), ("-x", "u"), ("ok", "")):
        with pytest.raises(ValueError, match="not a name stages.ini allows"):
            dumpfilter.pg_prologue(db, owner)


def test_pg_prologue_checks_the_protected_identities_on_its_first_line_as_the_fallback_does():
    from doit_stages.engines import pg_sql
    from doit_stages.engines.postgresql import CAN_CREATE
    entries = pg_sql.protected_entries("blog_test", [
        ("postgresql", 7301, 16384, "blog_test"),       # index 0: could be it
        ("postgresql", 7301, 16999, "blog_prod"),       # another name: never the same database
        ("mysql", "x", 1, "blog_test"),                 # another engine
        ("postgresql", 7301, 0, "blog_test"),           # no such database yet
        ("postgresql", 99, 17000, "blog_test")])        # index 4
    assert entries == ["7301:16384:0", "99:17000:4"]
    lines = dumpfilter.pg_prologue("blog_test", "blog", entries).decode().splitlines()
    assert lines[0] == CAN_CREATE + "; " + pg_sql.protected_sql("blog_test", entries)   # the python-less one's
    assert lines[0].count("doit-stages: protected database") == 2 and "= 16384 THEN" in lines[0]
    assert "datname = 'blog_test') = 17000 THEN RAISE EXCEPTION 'doit-stages: protected database 4'" in lines[0]
    assert lines[1].startswith("DROP DATABASE")                           # line 2 stays the DROP
    assert pg_sql.PROTECTED_RE.search("psql:<stdin>:1: ERROR:  doit-stages: protected database 4").group(1) == "4"
    for bad in (["1:2"], ["1:2:3:4"], ["x:1:0"], ["1:2:0; DROP"], ["1:2:0\nDROP"]):
        with pytest.raises(ValueError, match="not a server identity"):
            dumpfilter.pg_prologue("blog_test", "blog", bad)


def run_main(monkeypatch, argv):
    out, err = io.BytesIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(out))
    monkeypatch.setattr("sys.stderr", err)
    code = dumpfilter.main(argv)
    return code, out.getvalue(), err.getvalue()


def test_pg_restore_sends_prologue_dump_and_commit_only_for_a_whole_dump(tmp_path, monkeypatch):
    whole, cut = tmp_path / "whole.sql.gz", tmp_path / "cut.sql.gz"
    whole.write_bytes(gzip.compress(PG_DUMP))
    cut.write_bytes(gzip.compress(PG_DUMP[:400]))
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (whole, cut)}
    code, out, _ = run_main(monkeypatch, ["restore", str(whole), sha[whole], "postgresql", "blog", "blog"])
    assert code == 0 and out == dumpfilter.pg_prologue("blog", "blog") + PG_DUMP + b"\nCOMMIT;\n"
    code, out, err = run_main(monkeypatch, ["restore", str(cut), sha[cut], "postgresql", "blog", "blog"])
    assert code == 4 and b"COMMIT" not in out and "dump complete" in err        # the transaction never commits
    code, out, err = run_main(monkeypatch, ["restore", str(whole), sha[cut], "postgresql", "blog", "blog"])
    assert (code, out) == (5, b"") and "damaged" in err                         # nothing sent: nothing dropped
