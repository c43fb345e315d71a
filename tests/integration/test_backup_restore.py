"""The one-pass backup and restore against the real MariaDB and real sshd hosts: the rows counted from the
dump match COUNT(*), a damaged backup is refused without touching the database, retention keeps the backups
a production migration names, and the next run removes what a killed run left (never a live run's)."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from doit_stages.config import Config, Database, Project, parse_host
from doit_stages.errors import StepError
from doit_stages.layout import Layout
from doit_stages.runtime.leftovers import machine
from doit_stages.steps.database.backup import backup_database
from doit_stages.steps.database.restore import restore_backup
from doit_stages.transport import LocalTransport
from tests.lab.common import NASTY_PASSWORD
from tests.lab.deployer import end, start_doit

TRICKY = ["plain", "It's ),( tricky);", "ends with a backslash \\", "(starts with a paren", "line\nbreak\r\n",
          "tab\there", "unicode: žluťoučký kůň 🐎", "'); DROP TABLE x; --", "),\n(", ""]


def fill(mariadb, db, user):
    mariadb.query(db, "CREATE TABLE posts (id INT PRIMARY KEY, body LONGTEXT, blob_col BLOB)")
    mariadb.query(db, "CREATE TABLE `we``ird` (id INT)")
    mariadb.query(db, "CREATE TABLE empty_one (id INT)")
    con = mariadb.connect(db)
    cur = con.cursor()
    rows = [(i, TRICKY[i % len(TRICKY)] + "x" * (i % 300), bytes([i % 256, 0, 39, 92]) * (i % 5))
            for i in range(30_000)]                      # > 1 MB: mysqldump splits it into several INSERTs
    cur.executemany("INSERT INTO posts VALUES (%s, %s, %s)", rows)
    cur.execute("INSERT INTO `we``ird` VALUES (1), (2), (3)")
    con.close()
    # made by the user (a restore by a user cannot recreate root's DEFINER): a view, and a routine whose
    # body holds an INSERT and a line starting with "(" (not data)
    user_con = mariadb.connect(db, user=user, password=NASTY_PASSWORD)
    user_con.cursor().execute("CREATE VIEW v AS SELECT id FROM posts WHERE id < 10")
    user_con.cursor().execute("CREATE PROCEDURE p()\nBEGIN\n(SELECT 1);\nINSERT INTO `we``ird` VALUES (7),(8);\nEND")
    user_con.close()


@pytest.fixture
def local_db(tmp_path, mariadb, db_names, db_users, monkeypatch):
    src, dst = db_names("src"), db_names("dst")
    for name in (src, dst):
        mariadb.create_database(name)
    user, pw = db_users([src, dst])
    monkeypatch.setenv("DBSPEED_PW", pw)
    host = parse_host("local")
    dbs = {n: Database(name=n, engine="mysql", dbname=d, user=user, password_env="DBSPEED_PW", secret=pw,
                    backup_host=host)
           for n, d in (("prod", src), ("test", dst))}
    project = Project(name="blog", source=tmp_path, deploy_root=str(tmp_path / "root"), build="none")
    config = Config(tmp_path / "stages.ini", project, dbs, {})
    fill(mariadb, src, user)
    return config, LocalTransport(host), tmp_path / "root", user


def test_one_pass_backup_counts_rows_as_count_star_and_restores_the_same_data(local_db, mariadb):
    config, t, root, _ = local_db
    prod, test = config.databases["prod"], config.databases["test"]
    meta = backup_database(t, Layout(config.project.deploy_root), config, prod)
    assert meta["tables"] == mariadb.row_counts(prod.dbname) == {"posts": 30_000, "we`ird": 3, "empty_one": 0}
    path = root / "db_backup" / meta["file"]
    data = path.read_bytes()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["size"]
    sql = gzip.decompress(data)                                       # a standard gunzip reads it
    assert sql.rstrip().splitlines()[-1].startswith(b"-- Dump completed")
    restore_backup(t, Layout(config.project.deploy_root), test, meta, str(path))
    assert mariadb.checksums(test.dbname) == mariadb.checksums(prod.dbname)
    assert mariadb.row_counts(test.dbname) == meta["tables"]
    assert not list((root / ".deploy").glob("cnf.*"))                 # the option file went with its step


def test_a_damaged_backup_is_refused_and_the_database_is_left_alone(local_db, mariadb):
    config, t, root, _ = local_db
    prod, test = config.databases["prod"], config.databases["test"]
    meta = backup_database(t, Layout(config.project.deploy_root), config, prod)
    restore_backup(t, Layout(config.project.deploy_root), test, meta, str(root / "db_backup" / meta["file"]))
    mariadb.query(test.dbname, "INSERT INTO `we``ird` VALUES (42)")       # a mark: the database as it is now
    path = root / "db_backup" / meta["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(StepError, match="damaged.*was not changed"):
        restore_backup(t, Layout(config.project.deploy_root), test, meta, str(path))
    assert mariadb.row_counts(test.dbname)["we`ird"] == 4                # not dropped, not loaded


def test_a_refused_login_names_the_variable_that_supplies_the_password(local_db, mariadb):
    """MariaDB's "Access denied" to mysqldump and to mysql: one line naming [database:<name>] password_env and
    its variable, never the password; nothing recorded, nothing restored."""
    config, t, root, _ = local_db
    layout = Layout(config.project.deploy_root)
    meta = backup_database(t, layout, config, config.databases["prod"])
    wrong = {n: dataclasses.replace(d, secret="not-the-password") for n, d in config.databases.items()}
    with pytest.raises(StepError) as info:
        backup_database(t, layout, config, wrong["prod"])
    msg = str(info.value)
    assert msg.startswith("backup:prod: local: [database:prod] 127.0.0.1:3306 refused the login of user "), msg
    assert "password comes from $DBSPEED_PW ([database:prod] password_env)" in msg and "not-the-password" not in msg
    assert len(list((root / "db_backup").glob("*.json"))) == 1
    with pytest.raises(StepError, match=r"\[database:test\] password_env\); export that user's password in "
                                        r"DBSPEED_PW"):
        restore_backup(t, layout, wrong["test"], meta, str(root / "db_backup" / meta["file"]))
    assert not list((root / ".deploy").glob("cnf.*"))


def test_without_python3_on_the_host_the_checked_fallback_is_used(local_db, mariadb, tmp_path, monkeypatch):
    config, t, root, _ = local_db
    bin_dir = tmp_path / "bin"                       # every tool of this machine but python
    bin_dir.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(d).iterdir():
            if not tool.name.startswith("python") and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    meta = backup_database(t, Layout(config.project.deploy_root), config, config.databases["prod"])
    assert meta["counted"] == "count" and meta["tables"] == mariadb.row_counts(config.databases["prod"].dbname)
    path = root / "db_backup" / meta["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    restore_backup(t, Layout(config.project.deploy_root), config.databases["test"], meta, str(path))
    assert mariadb.checksums(config.databases["test"].dbname) == mariadb.checksums(config.databases["prod"].dbname)


def test_leftovers_of_dead_runs_go_and_a_live_runs_stay(local_db):
    config, t, root, _ = local_db
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        deploy = root / ".deploy"
        names = (f"cnf.{machine()}.{dead.pid}.AAAAAA", f"cnf.{machine()}.{live.pid}.BBBBBB")
        made = {name: deploy / name for name in names}
        for d in made.values():
            d.mkdir(parents=True)
            (d / "my.cnf").write_text("[client]\npassword=secret\n")
        incoming = deploy / "incoming" / f"{machine()}.{dead.pid}.blog-prod-x.sql.gz"
        incoming.parent.mkdir()
        incoming.write_bytes(b"production data")
        partial = root / "db_backup" / f".{machine()}.{dead.pid}.blog-prod-x.sql.gz.partial"
        partial.parent.mkdir()
        partial.write_bytes(b"half")
        backup_database(t, Layout(config.project.deploy_root), config, config.databases["prod"])
        assert not made[f"cnf.{machine()}.{dead.pid}.AAAAAA"].exists()
        assert not incoming.exists() and not partial.exists()
        assert (made[f"cnf.{machine()}.{live.pid}.BBBBBB"] / "my.cnf").exists()     # its run is alive
    finally:
        live.kill()
        live.wait()


# -- through doit, on the sshd hosts -------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(blog_world):
    return blog_world


def test_retention_keeps_the_backups_a_production_migration_names(world):
    p = world["project"]
    web1 = world["hosts"][0]
    p.ok("deploy:test")
    p.ok("promote:staging")
    record = [r for r in p.log(web1) if r["stage"] == "staging"][-1]
    assert len(record["backups"]) == 2
    p.write(max_age="1s", project_extra="keep_backups = 2\n")
    try:
        for _ in range(4):                          # refreshes, as deploy:test takes them
            time.sleep(1.1)
            p.ok("backup:prod")
    finally:
        p.write(max_age="24h", project_extra="")
    files = {b["file"] for b in p.backups(web1)}
    assert set(record["backups"]) <= files
    assert all(web1.path(f"/srv/blog/db_backup/{f}").is_file() for f in record["backups"])
    assert len([b for b in p.backups(web1) if not b["reason"]]) == 2      # routine ones: keep_backups


def test_a_damaged_newest_backup_fails_restore_and_is_not_marked(world):
    p, db, web1 = world["project"], world["mariadb"], world["hosts"][0]
    newest = p.backups(web1)[-1]
    path = web1.path(f"/srv/blog/db_backup/{newest['file']}")
    good = path.read_bytes()
    marker = web1.path("/srv/blog/.deploy/db-test.json")
    marker.unlink()                                   # make restore:test run
    before = db.row_counts(world["test"])
    path.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    try:
        res = p.doit("restore:test")
        assert res.returncode != 0 and "damaged" in res.stderr and "restore:test" in res.stderr
        assert db.row_counts(world["test"]) == before
        assert not marker.exists()
    finally:
        path.write_bytes(good)
    p.ok("restore:test")
    assert json.loads(marker.read_text())["backup"] == newest["name"]


def dump_waits_on(db, database: str, table: str) -> bool:
    """A connection of the tool's is held on `table`'s lock: mysqldump, reading it."""
    return bool(db.query(None, "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND USER <> 'root' "
                               "AND STATE LIKE 'Waiting for table%%lock' AND INFO LIKE %s",
                         (database, f"%`{table}`%")))


def test_a_run_killed_during_mysqldump_leaves_secrets_that_the_next_run_removes(world):
    p, db, web1 = world["project"], world["mariadb"], world["hosts"][0]
    db.query(world["prod"], "CREATE TABLE bulk (id INT PRIMARY KEY, pad VARCHAR(200))")
    db.query(world["prod"], "INSERT INTO bulk SELECT seq, REPEAT('p', 190) FROM seq_1_to_1000")
    deploy = web1.path("/srv/blog/.deploy")
    other = deploy / "cnf.some-other-box.12345.CCCCCC"          # another machine's: its run holds no lock
    p.write(max_age="1s")
    time.sleep(1.1)
    # mysqldump held mid-dump, for as long as it takes to look: a connection of ours write-locks `bulk`
    holder = db.connect(world["prod"])
    holder.cursor().execute("LOCK TABLES bulk WRITE")
    proc = start_doit(p, "backup:prod", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not dump_waits_on(db, world["prod"], "bulk") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)                                        # a state that stays until we unlock
        assert dump_waits_on(db, world["prod"], "bulk"), "the backup never reached the dump of `bulk`"
        left = list(deploy.glob(f"cnf.{machine()}.{proc.pid}.*"))
        assert left, "the backup dumps without its option file"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        holder.close()
        assert b"\npassword=" in (left[0] / "my.cnf").read_bytes()           # the secret, left for good
        web1.run(["sh", "-c", 'mkdir "$1" && echo "[client]" > "$1/my.cnf"', "sh",
                  "/srv/blog/.deploy/" + other.name])
        time.sleep(1.1)
        p.ok("backup:prod")
        assert not left[0].exists() and not other.exists()
        assert not list(deploy.glob("cnf.*")) and not list(web1.path("/srv/blog/db_backup").glob(".*.partial"))
        assert p.backups(web1)[-1]["tables"]["bulk"] == 1000
    finally:
        end(proc)
        if holder.is_connected():
            holder.close()
        p.write(max_age="24h")
        db.query(world["prod"], "DROP TABLE IF EXISTS bulk")
