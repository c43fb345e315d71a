"""The one-pass dump filter (tasks/hostside/dumpfilter.py) as the hosts run it: `python3 -c <its source>` on
this machine, dumping and restoring through pipes (its parts on plain inputs: tests/unit/test_dumpfilter.py)."""
from __future__ import annotations

import gzip
import hashlib
import subprocess
import zlib
from pathlib import Path

from doit_stages.engines.mysql import filter_source

MARIADB = (Path(__file__).parents[1] / "fixtures" / "dump_mariadb.sql").read_bytes()


def test_filter_restore_checks_sha_first_and_writes_nothing_when_damaged(tmp_path):
    f = tmp_path / "b.sql.gz"
    f.write_bytes(gzip.compress(MARIADB))
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    res = run_filter("restore", str(f), good, "mysql", "my`db")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"DROP DATABASE IF EXISTS `my``db`;\nCREATE DATABASE `my``db`;\nUSE `my``db`;\n" + MARIADB
    damaged = bytearray(f.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    f.write_bytes(bytes(damaged))
    res = run_filter("restore", str(f), good, "mysql", "mydb")
    assert res.returncode == 5 and res.stdout == b"" and b"damaged" in res.stderr


def test_filter_restore_refuses_a_cut_gzip_and_a_dump_without_end(tmp_path):
    f = tmp_path / "b.sql.gz"
    f.write_bytes(gzip.compress(MARIADB)[:-20])
    res = run_filter("restore", str(f), hashlib.sha256(f.read_bytes()).hexdigest())
    assert res.returncode == 4 and b"gzip" in res.stderr
    f.write_bytes(gzip.compress(MARIADB[:200]))
    res = run_filter("restore", str(f), hashlib.sha256(f.read_bytes()).hexdigest(), "mysql", "d")
    assert res.returncode == 4 and b"Dump completed" in res.stderr


def test_filter_restore_reads_concatenated_gzip_members(tmp_path):
    f = tmp_path / "b.sql.gz"
    f.write_bytes(gzip.compress(MARIADB[:300]) + gzip.compress(MARIADB[300:]))
    res = run_filter("restore", str(f), hashlib.sha256(f.read_bytes()).hexdigest())
    assert res.returncode == 0 and res.stdout == MARIADB


def test_filter_dump_through_python3_c(tmp_path):
    res = run_filter("dump", str(tmp_path / "p"), stdin=MARIADB)
    assert res.returncode == 0, res.stderr
    assert zlib.decompress((tmp_path / "p").read_bytes(), 31) == MARIADB
    res = run_filter("dump", str(tmp_path / "q"), stdin=MARIADB[:-30])
    assert res.returncode == 4 and res.stdout == b""


def run_filter(*args, stdin=b""):
    """The filter as the hosts run it: the system python3, the module's text given to -c."""
    return subprocess.run(["python3", "-c", filter_source(), *args], input=stdin, capture_output=True)
