"""The one-pass dump filter (tasks/steps/dumpfilter.py) on plain inputs, retention's choice, the rule for
leftovers of dead runs, and the progress line. No host, no server."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import zlib

import pytest

from doit_stages.steps import dumpfilter
from doit_stages.steps.backup import filter_source
from doit_stages.steps.dumpfilter import Compressor, RowCounter, completed
from doit_stages.steps.leftovers import dead_leftovers, owner_of, parse_listing
from doit_stages.steps.retention import backups_to_remove
from doit_stages.steps.streaming import parse_progress, progress_text

# MariaDB 10.11's mysqldump: one row a line after VALUES. Strings hold "),(", ");", quotes, backslashes.
MARIADB = rb"""-- MariaDB dump 10.19
/*!40101 SET NAMES utf8mb4 */;
DROP TABLE IF EXISTS `posts_post`;
CREATE TABLE `posts_post` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `body` longtext NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;
LOCK TABLES `posts_post` WRITE;
INSERT INTO `posts_post` VALUES
(1,'plain'),
(2,'It\'s ),( tricky);'),
(3,'ends with a quote\\'),
(4,'(starts with a paren'),
(5,NULL);
INSERT INTO `posts_post` VALUES
(6,'second statement');
UNLOCK TABLES;
CREATE TABLE `empty` (
  `id` int(11) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE `we``ird` (
  `id` int(11) NOT NULL
);
INSERT INTO `we``ird` VALUES
(1);
/*!50001 CREATE VIEW `a_view` AS SELECT 1 AS `id` */;
DELIMITER ;;
CREATE PROCEDURE `p`()
BEGIN
(SELECT 1);
INSERT INTO `posts_post` VALUES (99,'inside a routine body');
END ;;
DELIMITER ;
-- Dump completed on 2026-11-27 17:41:33
"""
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


def run_filter(*args, stdin=b""):
    """The filter as the hosts run it: the system python3, the module's text given to -c."""
    return subprocess.run(["python3", "-c", filter_source(), *args], input=stdin, capture_output=True)


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


# -- retention -----------------------------------------------------------------------------------------
def meta(n: int, reason: str = "") -> dict:
    return {"name": f"b{n:03d}", "file": f"b{n:03d}.sql.gz", "epoch": float(n), "reason": reason}


def test_retention_keeps_migration_pairs_apart_from_refreshes():
    metas = [meta(1, "before migrate:staging r1"), meta(2, "after migrate:staging r1")]
    metas += [meta(n) for n in range(3, 20)]                 # 17 refreshes by deploy:test
    metas += [meta(20, "before migrate:staging r2"), meta(21, "after migrate:staging r2")]
    metas += [meta(n, "for the rehearsal of r3") for n in range(22, 30)]
    gone = {m["name"] for m in backups_to_remove(metas, keep=10, keep_migrations=2)}
    kept = {m["name"] for m in metas} - gone
    assert {"b001", "b002", "b020", "b021"} <= kept
    routine = sorted(k for k in kept if k not in {"b001", "b002", "b020", "b021"})
    assert routine == ["b018", "b019"] + [f"b{n:03d}" for n in range(22, 30)]     # the newest 10 of the rest


def test_retention_drops_pairs_of_older_migrations_and_keeps_the_newest():
    metas = []
    for i in range(1, 5):
        metas += [meta(10 * i, f"before migrate:staging r{i}"), meta(10 * i + 1, f"after migrate:staging r{i}")]
    metas.append(meta(45, "before migrate:staging r5"))        # a failed migration: only its "before"
    gone = [m["name"] for m in backups_to_remove(metas, keep=1, keep_migrations=3)]
    assert gone == ["b010", "b011", "b020", "b021"]
    assert backups_to_remove([meta(1)], keep=0, keep_migrations=0) == []   # the newest always stays


# -- leftovers of dead runs ----------------------------------------------------------------------------
ME = ("laptop", 4242)


def test_owner_is_read_from_each_kind_of_name():
    assert owner_of("/srv/blog/.deploy/cnf.laptop.17.Ab3xYz") == ("laptop", 17)
    assert owner_of("/srv/blog/.deploy/incoming/ci-runner-7.99.blog-prod-x.sql.gz") == ("ci-runner-7", 99)
    assert owner_of("/srv/blog/db_backup/.laptop.5.blog-prod-20261127T101010.123Z.sql.gz.partial") == ("laptop", 5)
    assert owner_of("/srv/blog/.deploy/cnf.Ab3xYz") is None          # made by an older version
    assert owner_of("/srv/blog/db_backup/.blog-prod-20261127T101010.123Z.sql.gz.partial") is None


def test_leftovers_of_dead_runs_go_and_of_live_runs_stay():
    paths = ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/cnf.laptop.18.b", "/r/.deploy/cnf.laptop.4242.c",
             "/r/.deploy/cnf.ci-9.5.d", "/r/.deploy/cnf.old", "/r/.deploy/incoming/laptop.17.f.sql.gz"]
    alive = {18, 4242}.__contains__
    ours = {"machine": "laptop.example.org", "pid": 4242}
    # this run does not hold the lock: only this machine's dead pids
    assert dead_leftovers(paths, None, ME, "laptop.example.org", alive) == \
        ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/incoming/laptop.17.f.sql.gz"]
    assert dead_leftovers(paths, {"machine": "ci-9", "pid": 5}, ME, "laptop.example.org", alive) == \
        ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/incoming/laptop.17.f.sql.gz"]
    # it holds the lock: another machine's and an old version's go too; never a live pid here, never its own
    assert dead_leftovers(paths, ours, ME, "laptop.example.org", alive) == \
        ["/r/.deploy/cnf.laptop.17.a", "/r/.deploy/cnf.ci-9.5.d", "/r/.deploy/cnf.old",
         "/r/.deploy/incoming/laptop.17.f.sql.gz"]


def test_parse_listing():
    assert parse_listing('{"pid": 1}\n--\n/a\n/b\n') == ({"pid": 1}, ["/a", "/b"])
    assert parse_listing("\n--\n") == (None, [])
    assert parse_listing("junk\n--\n/a\n") == (None, ["/a"])


# -- progress ------------------------------------------------------------------------------------------
def test_progress_lines():
    assert parse_progress("progress 1000 0 5") == (1000, 0, 5)
    assert parse_progress("mysqldump: Got error") is None
    assert progress_text("backup:prod", 228_175_925, 0, 1_000_000, 6.2) == \
        "backup:prod  228.2 MB of SQL, 1,000,000 rows, 6 s"
    assert progress_text("restore:test", 29_000_000, 59_465_634, 0, 3) == "restore:test  48% of 59.5 MB, 3 s"


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_display_draws_only_on_a_terminal_and_clears_its_line(monkeypatch):
    from doit_stages.steps import streaming
    monkeypatch.setattr(streaming, "SHOW_AFTER", 0.0)
    tty, log = FakeTty(), io.StringIO()
    for stream in (tty, log):
        d = streaming.Display("backup:prod", stream)
        d.update(5_000_000, 0, 100)
        d.close()
    assert tty.getvalue().startswith("\rbackup:prod  5.0 MB of SQL, 100 rows, 0 s")
    assert tty.getvalue().endswith("\r\x1b[K")
    assert log.getvalue() == ""
