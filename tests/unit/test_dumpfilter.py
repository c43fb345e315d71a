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
