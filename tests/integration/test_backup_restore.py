"""The one-pass backup and restore against the real MariaDB and the real PostgreSQL (each test of the local
transport runs on both engines) and real sshd hosts: the rows counted from the dump match COUNT(*), a
damaged backup is refused without touching the database, the password travels in no argv and lands in no
file but the 0600 one of its step, retention keeps the backups a production migration names, and the next
run removes what a killed run left (never a live run's)."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from doit_stages.config import Config, Database, Project, parse_host
from doit_stages.engines import engine_for
from doit_stages.engines.pg_sql import pgpass_line
from doit_stages.errors import StepError
from doit_stages.hostside.dumpfilter import completed
from doit_stages.layout import Layout
from doit_stages.runtime.leftovers import machine
from doit_stages.steps.database.backup import backup_database
from doit_stages.steps.database.dbguard import refuse_protected_target
from doit_stages.steps.database.restore import restore_backup
from doit_stages.transport import LocalTransport
from tests.lab.common import NASTY_PASSWORD, CmdlineScan
from tests.lab.deployer import end, start_doit
from tests.lab.postgres import ident, write_passfile
from tests.lab.project import PASSWORD_ENV, REPO

TRICKY = ["plain", "It's ),( tricky);", "ends with a backslash \\", "(starts with a paren", "line\nbreak\r\n",
          "tab\there", "unicode: žluťoučký kůň 🐎", "'); DROP TABLE x; --", "),\n(", ""]
# PostgreSQL's COPY data: a value that is COPY's end marker, alone and on a line of its own
PG_TRICKY = [*TRICKY, "\\.", "\n\\.\n", "COPY public.posts (id) FROM stdin;"]
# libpq's password file escapes : and \ (pg_sql.pgpass_line); the URL percent-encodes them
PG_PASSWORD = NASTY_PASSWORD + ":colon\\:end\\"
ROWS = 30_000


def fill(mariadb, db, user):
    mariadb.query(db, "CREATE TABLE posts (id INT PRIMARY KEY, body LONGTEXT, blob_col BLOB)")
    mariadb.query(db, "CREATE TABLE `we``ird` (id INT)")
    mariadb.query(db, "CREATE TABLE empty_one (id INT)")
    con = mariadb.connect(db)
    cur = con.cursor()
    rows = [(i, TRICKY[i % len(TRICKY)] + "x" * (i % 300), bytes([i % 256, 0, 39, 92]) * (i % 5))
            for i in range(ROWS)]                        # > 1 MB: mysqldump splits it into several INSERTs
    cur.executemany("INSERT INTO posts VALUES (%s, %s, %s)", rows)
    cur.execute("INSERT INTO `we``ird` VALUES (1), (2), (3)")
    con.close()
    # made by the user (a restore by a user cannot recreate root's DEFINER): a view, and a routine whose
    # body holds an INSERT and a line starting with "(" (not data)
    user_con = mariadb.connect(db, user=user, password=NASTY_PASSWORD)
    user_con.cursor().execute("CREATE VIEW v AS SELECT id FROM posts WHERE id < 10")
    user_con.cursor().execute("CREATE PROCEDURE p()\nBEGIN\n(SELECT 1);\nINSERT INTO `we``ird` VALUES (7),(8);\nEND")
    user_con.close()


def fill_pg(postgres, db, role):
    """As the role (it owns what it makes): tricky text and bytes, an odd name, an empty table, a table in a
    schema of its own, a view, a sequence a few values on (an app's next id must go on from there)."""
    postgres.run_sql(db, """
        CREATE TABLE posts (id bigserial PRIMARY KEY, body text, blob_col bytea);
        CREATE TABLE "we""ird" (id int);
        CREATE TABLE empty_one (id int);
        CREATE SCHEMA extra;
        CREATE TABLE extra.notes (id int PRIMARY KEY, note text);
        CREATE VIEW v AS SELECT id FROM posts WHERE id < 10;
        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$SELECT 1$$;
        CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
        INSERT INTO events VALUES (1, '2026-05-01'), (2, '2026-06-01'), (3, '2027-01-02');""", user=role)
    with postgres.connect(db) as con:
        con.execute(f"SET ROLE {ident(role)}")
        with con.cursor().copy("COPY posts (body, blob_col) FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((PG_TRICKY[i % len(PG_TRICKY)] + "x" * (i % 300), bytes([i % 256, 0, 39, 92]) * (i % 5)))
        con.execute('INSERT INTO "we""ird" VALUES (1), (2), (3)')
        con.execute("INSERT INTO extra.notes VALUES (1, 'a'), (2, 'b')")
        con.execute("SELECT nextval('posts_id_seq') FROM generate_series(1, 5)")   # ids used up by no row


class MariaLab:
    engine, rows_table, odd = "mysql", "posts", "we`ird"
    password = NASTY_PASSWORD

    def __init__(self, mariadb, db_names, db_users):
        self.server = mariadb
        self.src, self.dst = db_names("src"), db_names("dst")
        for name in (self.src, self.dst):
            mariadb.create_database(name)
        self.user, _ = db_users([self.src, self.dst])
        fill(mariadb, self.src, self.user)

    def counts(self, db):
        return self.server.row_counts(db)

    def content(self, db):
        return self.server.checksums(db)

    def add_odd_row(self, db):
        self.server.query(db, "INSERT INTO `we``ird` VALUES (42)")

    def expected(self):
        return {"posts": ROWS, "we`ird": 3, "empty_one": 0}

    def close(self):
        pass


class PgLab:
    engine, odd = "postgresql", 'we"ird'
    password = PG_PASSWORD

    def __init__(self, postgres):
        self.server = postgres
        token = f"dst_{os.getpid()}_{secrets.token_hex(3)}"
        self.src, self.dst, self.user = f"{token}_src", f"{token}_dst", f"{token}_u"
        postgres.create_role(self.user, PG_PASSWORD)
        postgres.query("postgres", f"ALTER ROLE {ident(self.user)} CREATEDB")
        for name in (self.src, self.dst):
            postgres.create_database(name, owner=self.user)
        fill_pg(postgres, self.src, self.user)

    def counts(self, db):
        """COUNT(*) of each table, a partitioned table's rows counted in its partitions only."""
        parents = {r[0] for r in self.server.query(db, "SELECT c.relname FROM pg_class c WHERE c.relkind = 'p'")}
        return {t: n for t, n in self.server.row_counts(db).items() if t not in parents}

    def content(self, db):
        """Each table's rows in order as text (equal data: equal digests), and the sequence's next value."""
        out = {}
        for table in self.server.tables(db):
            name = ".".join(ident(p) for p in table.split(".")) if table.startswith("extra.") else ident(table)
            digest = f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {name} t"
            out[table] = self.server.query(db, digest)[0][0]
        out["posts_id_seq"] = self.server.query(db, "SELECT last_value, is_called FROM posts_id_seq")[0]
        return out

    def add_odd_row(self, db):
        self.server.query(db, 'INSERT INTO "we""ird" VALUES (42)')

    def expected(self):
        return {"posts": ROWS, 'we"ird': 3, "empty_one": 0, "extra.notes": 2, "events_2026": 2, "events_2027": 1}

    def close(self):
        self.server.drop_role(self.user)


@pytest.fixture(params=["mysql", "postgresql"])
def local_db(request, tmp_path, monkeypatch):
    """prod (filled) and test databases of one engine, a user of their own with a nasty password in
    $DBSPEED_PW, the local transport: (config, transport, deploy root, lab)."""
    if request.param == "mysql":
        lab = MariaLab(request.getfixturevalue("mariadb"), request.getfixturevalue("db_names"),
                       request.getfixturevalue("db_users"))
    else:
        lab = PgLab(request.getfixturevalue("postgres"))
    monkeypatch.setenv("DBSPEED_PW", lab.password)
    host = parse_host("local")
    port = 3306 if lab.engine == "mysql" else 5432
    dbs = {n: Database(name=n, engine=lab.engine, dbname=d, user=lab.user, password_env="DBSPEED_PW",
                       secret=lab.password, backup_host=host, port=port)
           for n, d in (("prod", lab.src), ("test", lab.dst))}
    project = Project(name="blog", source=tmp_path, deploy_root=str(tmp_path / "root"), build="none")
    config = Config(tmp_path / "stages.ini", project, dbs, {})
    try:
        yield config, LocalTransport(host), tmp_path / "root", lab
    finally:
        lab.close()


@pytest.fixture
def argvs(monkeypatch):
    """Every argv this process starts (the local transport's commands), as it starts them."""
    seen = []
    init = subprocess.Popen.__init__

    def record(self, args, *a, **kw):
        seen.append([str(w) for w in ([args] if isinstance(args, (str, bytes)) else args)])
        init(self, args, *a, **kw)
    monkeypatch.setattr(subprocess.Popen, "__init__", record)
    return seen


def holding(root: Path, password: str) -> list[str]:
    """Files under root holding the password (raw or percent-encoded)."""
    needles = [password.encode(), quote(password, safe="").encode()]
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def test_one_pass_backup_counts_rows_as_count_star_and_restores_the_same_data(local_db, argvs):
    config, t, root, lab = local_db
    prod, test = config.databases["prod"], config.databases["test"]
    with CmdlineScan([lab.password.encode(), quote(lab.password, safe="").encode()]) as scan:
        meta = backup_database(t, Layout(config.project.deploy_root), config, prod)
        assert meta["counted"] == "dump"
        assert meta["tables"] == lab.counts(prod.dbname) == lab.expected()
        path = root / "db_backup" / meta["file"]
        data = path.read_bytes()
        assert os.stat(path).st_mode & 0o777 == 0o600 and path.name.endswith(".sql.gz")
        assert json.loads(path.with_name(path.name[:-len(".sql.gz")] + ".json").read_text())["sha256"] == meta["sha256"]
        assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["size"]
        sql = gzip.decompress(data)                                       # a standard gunzip reads it
        last = b"-- Dump completed" if lab.engine == "mysql" else b"-- PostgreSQL database dump complete"
        assert any(ln.startswith(last) for ln in sql.rstrip().splitlines()[-4:]) and completed(sql[-4096:], lab.engine)
        restore_backup(t, Layout(config.project.deploy_root), test, meta, str(path))
    assert lab.content(test.dbname) == lab.content(prod.dbname)
    assert lab.counts(test.dbname) == meta["tables"]
    assert not list((root / ".deploy").glob("cnf.*"))                 # the password file went with its step
    assert scan.seen == [] and argvs and not [a for a in argvs if any(lab.password in w for w in a)]
    assert holding(root, lab.password) == []


def test_the_restored_rows_are_counted_by_the_server_and_a_count_the_backup_lacks_fails(local_db, argvs):
    """PostgreSQL: the rows each COPY stored (psql's tags, the load's own session) are the restore's counts,
    with no COUNT(*) pass after it; when they are not the backup's, the tables are counted, and a count the
    backup does not hold fails the restore, on both engines."""
    config, t, root, lab = local_db
    prod, test = config.databases["prod"], config.databases["test"]
    layout = Layout(config.project.deploy_root)
    meta = backup_database(t, layout, config, prod)
    path = str(root / "db_backup" / meta["file"])
    del argvs[:]
    restore_backup(t, layout, test, meta, path)
    assert lab.counts(test.dbname) == meta["tables"] == lab.expected()
    counted = [a for a in argvs if any("query_to_xml" in w for w in a)]   # ROW_COUNTS: COUNT(*) of each table
    if lab.engine == "postgresql":
        assert counted == []                                            # the tags were the counts
    wrong = {**meta, "tables": {**meta["tables"], "posts": ROWS + 1}}
    del argvs[:]
    with pytest.raises(StepError, match=f"does not match the backup's row counts \\(posts: {ROWS} rows, backup has "
                                        f"{ROWS + 1}\\); the database is not usable"):
        restore_backup(t, layout, test, wrong, path)
    if lab.engine == "postgresql":
        assert counted == [] and [a for a in argvs if any("query_to_xml" in w for w in a)]   # counted, then refused


def test_a_damaged_backup_is_refused_and_the_database_is_left_alone(local_db):
    config, t, root, lab = local_db
    prod, test = config.databases["prod"], config.databases["test"]
    meta = backup_database(t, Layout(config.project.deploy_root), config, prod)
    restore_backup(t, Layout(config.project.deploy_root), test, meta, str(root / "db_backup" / meta["file"]))
    lab.add_odd_row(test.dbname)                                       # a mark: the database as it is now
    path = root / "db_backup" / meta["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(StepError, match="damaged.*was not changed"):
        restore_backup(t, Layout(config.project.deploy_root), test, meta, str(path))
    assert lab.counts(test.dbname)[lab.odd] == 4                       # not dropped, not loaded


def test_a_refused_login_names_the_variable_that_supplies_the_password(local_db):
    """The server's refusal of the login to the dump and to the restore: one line naming [database:<name>]
    password_env and its variable, never the password; nothing recorded, nothing restored."""
    config, t, root, lab = local_db
    layout = Layout(config.project.deploy_root)
    meta = backup_database(t, layout, config, config.databases["prod"])
    wrong = {n: dataclasses.replace(d, secret="not-the-password") for n, d in config.databases.items()}
    with pytest.raises(StepError) as info:
        backup_database(t, layout, config, wrong["prod"])
    msg = str(info.value)
    port = config.databases["prod"].port
    refused = "refused the login of user " if lab.engine == "mysql" else f"refused the password of role {lab.user}"
    assert msg.startswith(f"backup:prod: local: [database:prod] 127.0.0.1:{port} {refused}"), msg
    assert "password comes from $DBSPEED_PW ([database:prod] password_env)" in msg and "not-the-password" not in msg
    assert len(list((root / "db_backup").glob("*.json"))) == 1
    before = lab.counts(config.databases["test"].dbname)
    with pytest.raises(StepError, match=r"\[database:test\] password_env\); export th.* password (of role \S+ )?in "
                                        r"DBSPEED_PW"):
        restore_backup(t, layout, wrong["test"], meta, str(root / "db_backup" / meta["file"]))
    assert lab.counts(config.databases["test"].dbname) == before
    assert not list((root / ".deploy").glob("cnf.*"))


def without_python(tmp_path, monkeypatch) -> None:
    """PATH: every tool of this machine but python (the local transport's host without python3)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(d).iterdir():
            if not tool.name.startswith("python") and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_without_python3_on_the_host_the_checked_fallback_is_used(local_db, tmp_path, monkeypatch):
    config, t, root, lab = local_db
    without_python(tmp_path, monkeypatch)
    meta = backup_database(t, Layout(config.project.deploy_root), config, config.databases["prod"])
    assert meta["counted"] == "count" and meta["tables"] == lab.counts(config.databases["prod"].dbname)
    path = root / "db_backup" / meta["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    restore_backup(t, Layout(config.project.deploy_root), config.databases["test"], meta, str(path))
    assert lab.content(config.databases["test"].dbname) == lab.content(config.databases["prod"].dbname)
    assert holding(root, lab.password) == []


@pytest.fixture
def pg_db(request, tmp_path, monkeypatch):
    """local_db on PostgreSQL only."""
    lab = PgLab(request.getfixturevalue("postgres"))
    monkeypatch.setenv("DBSPEED_PW", lab.password)
    try:
        yield lab, LocalTransport(parse_host("local")), Layout(str(tmp_path / "root"))
    finally:
        lab.close()


def test_a_test_database_that_is_production_by_another_name_is_refused_before_the_drop(pg_db):
    """test names localhost, prod 127.0.0.1, one database: the config cannot always tell (a name in DNS, a
    forwarded port); the server can. Asked right before the drop, both answer with one identity: refused,
    and nothing is dropped."""
    lab, t, layout = pg_db
    host = parse_host("local")
    prod = Database(name="prod", engine="postgresql", dbname=lab.src, user=lab.user, password_env="DBSPEED_PW",
                    secret=lab.password, backup_host=host, host="127.0.0.1", port=5432)
    test = dataclasses.replace(prod, name="test", host="localhost")
    other = dataclasses.replace(prod, name="other", dbname=lab.dst)
    engine = engine_for(prod)
    before = lab.counts(lab.src)
    missing = dataclasses.replace(prod, name="new", dbname=lab.dst + "_new")       # a first restore's target
    ids = {d.name: engine.server_identity(t, layout, d) for d in (prod, test, other, missing)}
    assert ids["test"] == ids["prod"] != ids["other"] and ids["other"][1] == ids["prod"][1]   # one cluster
    assert ids["new"] == ("postgresql", ids["prod"][1], 0, lab.dst + "_new")
    refuse_protected_target("test", other, ids["other"], [(prod, ids["prod"])])         # its own: passes
    with pytest.raises(StepError) as info:
        refuse_protected_target("test", test, ids["test"], [(prod, ids["prod"])])
    assert str(info.value).startswith(f"restore:test: refused: [database:test] reaches the same database as "
                                      f"[database:prod] (database {lab.src} (oid {ids['prod'][2]}) of the "
                                      f"PostgreSQL server with system identifier "), str(info.value)
    assert lab.counts(lab.src) == before == lab.expected()


@pytest.mark.parametrize("python", ["with python3", "without python3"])
def test_the_load_itself_refuses_to_drop_a_protected_database(pg_db, tmp_path, monkeypatch, python):
    """PostgreSQL asks the target's identity in the session of its DROP (restore:<stage> gives the load the
    protected databases' identities): the same refusal, nothing dropped; a database of its own loads."""
    lab, t, layout = pg_db
    host = parse_host("local")
    prod = Database(name="prod", engine="postgresql", dbname=lab.src, user=lab.user, password_env="DBSPEED_PW",
                    secret=lab.password, backup_host=host, host="127.0.0.1", port=5432)
    test = dataclasses.replace(prod, name="test", host="localhost")       # prod by another name
    other = dataclasses.replace(prod, name="other", dbname=lab.dst)
    config = Config(tmp_path / "stages.ini", Project(name="blog", source=tmp_path, deploy_root=layout.root,
                                                     build="none"), {"prod": prod}, {})
    meta = backup_database(t, layout, config, prod)
    path = f"{layout.root}/db_backup/{meta['file']}"
    engine = engine_for(prod)
    protected = [(other, engine.server_identity(t, layout, other)), (prod, engine.server_identity(t, layout, prod))]
    if python == "without python3":
        without_python(tmp_path, monkeypatch)
    lab.add_odd_row(lab.src)                                                 # a mark: prod as it is now
    before = lab.content(lab.src)
    with pytest.raises(StepError) as info:
        restore_backup(t, layout, test, meta, path, protected=protected, stage="test")
    assert str(info.value).startswith(f"restore:test: refused: [database:test] reaches the same database as "
                                      f"[database:prod] (database {lab.src} (oid {protected[1][1][2]}) of the "
                                      f"PostgreSQL server with system identifier {protected[1][1][1]}); "
                                      "restoring would drop it. Nothing was changed"), str(info.value)
    assert lab.content(lab.src) == before                                    # not dropped, not loaded
    restore_backup(t, layout, other, meta, path, protected=[(prod, protected[1][1])], stage="test")
    assert lab.counts(lab.dst) == meta["tables"]
    assert not list(Path(layout.root, ".deploy").glob("cnf.*"))


def test_a_role_without_createdb_is_refused_before_the_drop_naming_the_key(pg_db):
    lab, t, layout = pg_db
    host = parse_host("local")
    db = {n: Database(name=n, engine="postgresql", dbname=d, user=lab.user, password_env="DBSPEED_PW",
                      secret=lab.password, backup_host=host, port=5432) for n, d in (("prod", lab.src),
                                                                                      ("test", lab.dst))}
    config = Config(layout.root + "/stages.ini", Project(name="blog", source=Path(layout.root),
                                                         deploy_root=layout.root, build="none"), db, {})
    meta = backup_database(t, layout, config, db["prod"])
    restore_backup(t, layout, db["test"], meta, f"{layout.root}/db_backup/{meta['file']}")
    lab.add_odd_row(lab.dst)
    lab.server.query("postgres", f"ALTER ROLE {ident(lab.user)} NOCREATEDB")
    with pytest.raises(StepError) as info:
        restore_backup(t, layout, db["test"], meta, f"{layout.root}/db_backup/{meta['file']}")
    assert str(info.value) == (f"local: [database:test] 127.0.0.1:5432: role {lab.user} lacks CREATEDB, and a "
                               f"restore drops database {lab.dst} and creates it again owned by that role: ALTER "
                               f"ROLE {lab.user} CREATEDB on the server, or fix [database:test] user; test was not "
                               "changed")
    assert lab.counts(lab.dst)[lab.odd] == 4


def test_with_passfile_the_users_own_file_on_the_host_supplies_the_password(pg_db, tmp_path):
    """passfile = libpq's password file on the host, never read by the tool: the backup and the restore log
    in with it, the tool writes no password file of its own; a missing file is one line naming the key, a
    wrong password in it one line naming the file."""
    lab, t, layout = pg_db
    host = parse_host("local")
    passfile = tmp_path / "home" / ".pgpass"
    passfile.parent.mkdir()
    base = Database(name="prod", engine="postgresql", dbname=lab.src, user=lab.user, password_env="",
                    passfile=str(passfile), backup_host=host, port=5432)
    db = {"prod": base, "test": dataclasses.replace(base, name="test", dbname=lab.dst)}
    lines = [pgpass_line(dataclasses.replace(d, password_env="X", secret=lab.password))
             for d in (db["prod"], db["test"], dataclasses.replace(base, dbname="postgres"))]
    write_passfile(passfile, *lines)
    config = Config(tmp_path / "stages.ini", Project(name="blog", source=tmp_path, deploy_root=layout.root,
                                                     build="none"), db, {})
    meta = backup_database(t, layout, config, db["prod"])
    assert meta["tables"] == lab.expected()
    restore_backup(t, layout, db["test"], meta, f"{layout.root}/db_backup/{meta['file']}")
    assert lab.content(lab.dst) == lab.content(lab.src)
    assert holding(Path(layout.root), lab.password) == []
    passfile.unlink()
    with pytest.raises(StepError) as info:
        backup_database(t, layout, config, db["prod"])
    assert str(info.value) == (f"backup:prod: [database:prod] passfile {passfile}: no readable file on local; put "
                               "libpq's password file there (mode 0600) or fix passfile; no backup was recorded")
    write_passfile(passfile, *(ln.replace(ln.rsplit(":", 1)[-1], "wrong\n") for ln in lines))
    with pytest.raises(StepError) as info:
        backup_database(t, layout, config, db["prod"])
    assert str(info.value).startswith(f"backup:prod: local: [database:prod] 127.0.0.1:5432 refused the password of "
                                      f"role {lab.user}: the password comes from libpq's password file on the host "
                                      f"([database:prod] passfile = {passfile})"), str(info.value)


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


# what a backup needs none of: verify's pytest and testinfra, the rehearsal's database drivers, the S3 store's
# boto3, plumbum (the deploying machine's own commands: git, pip, ssh -O), xml.etree (the JUnit file)
NOT_IMPORTED = ("pytest", "_pytest", "testinfra", "mysql", "psycopg", "boto3", "botocore", "plumbum", "xml")


def exchanges(p, tmp_path, *args: str) -> tuple[dict[str, int], list]:
    """doit ARGS through bench/_doit_probe.py: ({host port: exchanges over its session}, the trace)."""
    out = tmp_path / "probe.json"
    env = {**os.environ, "STAGES_INI": str(p.ini), PASSWORD_ENV: p.password, "BENCH_PROBE_OUT": str(out),
           "BENCH_PROBE_TRACE": "1"}
    res = subprocess.run([sys.executable, str(REPO / "bench" / "_doit_probe.py"), "-f", str(REPO / "dodo.py"), *args],
                         cwd=p.workdir, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    probe = json.loads(out.read_text())
    per: dict[str, int] = {}
    for node in probe["nodes"].values():
        for phase in node.get("exchanges", {}).values():
            for port, (commands, _logins) in phase.items():
                per[port] = per.get(port, 0) + commands
    return per, [(ev["node"], ev["what"]) for ev in probe["trace"]]


def test_a_backup_makes_few_exchanges_and_imports_nothing_it_does_not_need(world, tmp_path):
    p, web1 = world["project"], world["hosts"][0]
    p.write(max_age="1s", project_extra="keep_backups = 2\n")
    try:
        time.sleep(1.1)
        per, trace = exchanges(p, tmp_path, "backup:prod")
        # the lock's take + the check's listing of the backups (kept for the action's retention); the
        # directory + the dead runs' leftovers; the option file + whether python3 is there; the dump; the
        # option file removed; the dump moved into place + its metadata + retention's removals; the lock's
        # release. Before (issue 22): 14, and one more per backup removed.
        assert list(per.values()) == [7], (per, trace)
        time.sleep(1.1)
        res = p.ok("backup:prod", env={"PYTHONPROFILEIMPORTTIME": "1"})
        imported = {ln.split("|")[-1].strip().split(".")[0] for ln in res.stderr.splitlines()
                    if ln.startswith("import time:")}
        assert "doit_stages" in imported and "sqlite3" in imported          # the record of what was imported
        assert not imported & set(NOT_IMPORTED), sorted(imported & set(NOT_IMPORTED))
        routine = [b for b in p.backups(web1) if not b["reason"]]
        assert len(routine) == 2                                           # retention ran in the last exchange
        newest = routine[-1]
        data = web1.path(f"/srv/blog/db_backup/{newest['file']}").read_bytes()
        assert hashlib.sha256(data).hexdigest() == newest["sha256"] and completed(gzip.decompress(data)[-4096:])
        assert not list(web1.path("/srv/blog/.deploy").glob("cnf.*"))
        assert not list(web1.path("/srv/blog/db_backup").glob(".*.partial"))
    finally:
        p.write(max_age="24h", project_extra="")


def test_a_restore_makes_few_exchanges(world, tmp_path):
    p, db, web1 = world["project"], world["mariadb"], world["hosts"][0]
    p.ok("backup:prod")                               # a backup of prod to restore (none: taken now)
    newest = p.backups(web1)[-1]
    marker = web1.path("/srv/blog/.deploy/db-test.json")
    marker.unlink(missing_ok=True)                                 # make restore:test run
    db.query(world["test"], "DROP TABLE IF EXISTS scratch")
    db.query(world["test"], "CREATE TABLE scratch (id INT)")     # what the restore must drop
    per, trace = exchanges(p, tmp_path, "restore:test")
    # on the backup host: the lock's take + the check's reads (the source's backups, the marker); the
    # marker read again; the marker removed; the servers' identities of the target and the source (each:
    # the option file made, the query, the file removed, as one exchange); the option file + python3 + the
    # dead runs' leftovers; the load; the row counts; the option file removed; the marker written; the
    # lock's release. Before: 26 (each identity 5, each option file 3 + python3 + the leftovers' list).
    assert per[str(web1.port)] == 12, (per, trace)
    assert json.loads(marker.read_text())["backup"] == newest["name"]
    assert "scratch" not in db.row_counts(world["test"])
    assert db.row_counts(world["test"]) == newest["tables"]
    assert not list(web1.path("/srv/blog/.deploy").glob("cnf.*"))
