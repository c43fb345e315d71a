#!/usr/bin/env python3
"""`doit backup:prod` and `doit restore:test` against the plain scripts a user would write, same run.

    .venv/bin/python bench/bench_backup.py [--engine mysql|postgresql] [--rows 1000000] [--repeat 5]

Run as root. One fake host of tests/lab/sshd.py (an sshd on 127.0.0.1 in its own mount namespace, logged
into as `deploy`) is the backup host of both databases, as on a server; the local MariaDB (127.0.0.1:3306)
holds `dsb_prod` with --rows rows in the blog's posts_post shape (title, slug, a body of ~130 bytes with
quotes, a backslash and "),(" in it, a datetime) and an empty posts_comment, and `dsb_test`.

Timed, alternating A B A B ... (the machine is shared: the ratio is taken pair by pair, and its median is
what counts), wall seconds from the start of the process to its exit:

    plain backup    ssh db1 'mysqldump --single-transaction --quick ... dsb_prod | gzip -1 > f'
    doit backup     doit backup:prod   (backup_max_age = 1s, so every run takes a new backup; it checks
                    everything: completion line, gzip CRC, sha256, row counts)
    plain restore   ssh db1 'gunzip -c <the newest backup> | mysql dsb_test'

--breakdown: where doit backup:prod's extra time goes (its start-up, each command over the session, the
Python between them, its exit: bench/_doit_probe.py's trace) beside the plain script's parts.
    doit restore    doit restore:test  (its marker removed first, so it always restores; sha256 checked
                    first, row counts checked after)

Both sides read the same option file kind (a [client] file with the password, on the host). Traffic goes
only to 127.0.0.1.

--engine postgresql: the local PostgreSQL (127.0.0.1:5432, tests/lab/postgres.py) instead, a role dsb_user
with a password and CREATEDB owning dsb_prod and dsb_test, the same rows (generate_series), and:

    plain backup    ssh db1 'pg_dump --no-owner --no-privileges dsb_prod | gzip -1 > f'   (the engine's
                    pg_dump options)
    doit backup     doit backup:prod   (pg_dump | python3 filter: zlib -1, sha256, inflate, COPY rows counted,
                    completion line)
    plain restore   ssh db1 'dropdb --force dsb_test; createdb -O dsb_user dsb_test;
                    gunzip -c <the newest backup> | psql -X -q -v ON_ERROR_STOP=1 --single-transaction'
    doit restore    doit restore:test  (both servers' identity asked, sha256 checked first, CREATEDB checked,
                    DROP ... WITH (FORCE), CREATE ... OWNER, the dump in one transaction, COUNT(*) of every
                    table after)

The plain side reads the password from a libpq password file on the host (/srv/plain.pgpass, 0600, named by
PGPASSFILE); doit writes its own 0600 one for the run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                  # the tests' lab: tests.lab

from tests.lab.apprepo import AppRepo  # noqa: E402
from tests.lab.mariadb import MariaDB, write_option_file  # noqa: E402
from tests.lab.postgres import Postgres, write_passfile  # noqa: E402
from tests.lab.sshd import SshHosts  # noqa: E402

DODO = REPO / "dodo.py"
PROBE = REPO / "bench" / "_doit_probe.py"
PASSWORD = "bench pw;$(x)'\"#"
DUMP = "mysqldump --defaults-extra-file=/srv/plain.cnf --single-transaction --quick --routines --triggers " \
       "--events --hex-blob --no-tablespaces -- dsb_prod"
INI = """\
[project]
name = bench
source = {source}
deploy_root = /srv/bench
build = none
ssh_config = {ssh_config}
backup_max_age = 1s
keep_backups = 3

[database:prod]
engine = mysql
host = 127.0.0.1
name = dsb_prod
user = dsb_user
password_env = DSB_PASSWORD
backup_host = {host}

[database:test]
engine = mysql
host = 127.0.0.1
name = dsb_test
user = dsb_user
password_env = DSB_PASSWORD
backup_host = {host}

[stage:test]
hosts = {host}
settings = blog.settings.test
database = test
restore_from = prod

[stage:prod]
hosts = {host}
settings = blog.settings.prod
database = prod
"""
FILL = """
DROP TABLE IF EXISTS posts_comment, posts_post;
CREATE TABLE posts_post (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(200) NOT NULL,
  slug VARCHAR(200) NOT NULL, body LONGTEXT NOT NULL, created DATETIME(6) NOT NULL, KEY (slug));
CREATE TABLE posts_comment (id INT AUTO_INCREMENT PRIMARY KEY, post_id INT NOT NULL, author VARCHAR(100) NOT NULL,
  body LONGTEXT NOT NULL, created DATETIME(6) NOT NULL, KEY (post_id));
INSERT INTO posts_post (title, slug, body, created)
  SELECT CONCAT('Post number ', seq, ' about things'), CONCAT('post-number-', seq),
         CONCAT('It''s a body, with "quotes" and ),( and a backslash \\\\ ', SHA2(seq, 256), ' ',
                REPEAT('x', seq % 20)),
         NOW(6) - INTERVAL seq SECOND FROM seq_1_to_{rows};
"""


PG_ENV = "PGPASSFILE=/srv/plain.pgpass PGHOST=127.0.0.1 PGPORT=5432 PGUSER=dsb_user"
PG_DUMP = f"{PG_ENV} pg_dump --no-owner --no-privileges dsb_prod"   # engines/postgresql.py's PG_DUMP
PG_FILL = """
DROP TABLE IF EXISTS posts_comment, posts_post;
CREATE TABLE posts_post (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, title varchar(200) NOT NULL,
  slug varchar(200) NOT NULL, body text NOT NULL, created timestamptz NOT NULL);
CREATE INDEX posts_post_slug ON posts_post (slug);
CREATE INDEX posts_post_slug_like ON posts_post (slug varchar_pattern_ops);
CREATE TABLE posts_comment (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  post_id bigint NOT NULL REFERENCES posts_post (id) DEFERRABLE INITIALLY DEFERRED, author varchar(100) NOT NULL,
  body text NOT NULL, created timestamptz NOT NULL);
CREATE INDEX posts_comment_post_id ON posts_comment (post_id);
INSERT INTO posts_post (title, slug, body, created)
  SELECT 'Post number ' || g || ' about things', 'post-number-' || g,
         'It''s a body, with "quotes" and ),( and a backslash \\ ' || encode(sha256(g::text::bytea), 'hex') || ' '
           || repeat('x', g % 20),
         now() - g * interval '1 second' FROM generate_series(1, {rows}) g;
ANALYZE posts_post;
"""


def pg_setup(base: Path, rows: int):
    """PostgreSQL's side of setup(): the role (a password, CREATEDB), its two databases, the rows, and the
    plain side's libpq password file on the host."""
    pg = Postgres()
    pg.ensure_running()
    pg.drop_role("dsb_user")                              # and the databases it owns
    pg.create_role("dsb_user", PASSWORD)
    pg.query("postgres", 'ALTER ROLE "dsb_user" CREATEDB')
    for name in ("dsb_prod", "dsb_test"):
        pg.create_database(name, owner="dsb_user", replace=True)
    print(f"filling dsb_prod with {rows:,} rows ...", flush=True)
    pg.run_sql("dsb_prod", PG_FILL.format(rows=rows), user="dsb_user")
    hosts = SshHosts(base / "hosts", names=("db1",))
    host = hosts["db1"]
    host.wipe()
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    write_passfile(host.path("/srv/plain.pgpass"), f"127.0.0.1:5432:*:dsb_user:{escaped}", owner="deploy")
    repo = AppRepo(base / "app")
    work = base / "work"
    work.mkdir()
    ini = INI.replace("engine = mysql", "engine = postgresql")
    (work / "stages.ini").write_text(ini.format(source=repo.path, ssh_config=hosts.ssh_config, host=host.url))
    return hosts, host, work


def setup(base: Path, rows: int):
    db = MariaDB()
    db.ensure_running()
    for name in ("dsb_prod", "dsb_test"):
        db.create_database(name, replace=True)
    db.drop_user("dsb_user")
    db.create_user("dsb_user", PASSWORD, ["dsb_prod", "dsb_test"])
    print(f"filling dsb_prod with {rows:,} rows ...", flush=True)
    conn = db.connect("dsb_prod")
    cur = conn.cursor()
    for stmt in FILL.format(rows=rows).split(";"):
        if stmt.strip():
            cur.execute(stmt)
    conn.close()
    hosts = SshHosts(base / "hosts", names=("db1",))
    host = hosts["db1"]
    host.wipe()
    write_option_file(host.path("/srv/plain.cnf"), "dsb_user", PASSWORD, owner="deploy")
    repo = AppRepo(base / "app")
    work = base / "work"
    work.mkdir()
    (work / "stages.ini").write_text(INI.format(source=repo.path, ssh_config=hosts.ssh_config, host=host.url))
    return hosts, host, work


def timed(argv, env=None) -> float:
    t0 = time.monotonic()
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed:\n{res.stdout}\n{res.stderr}")
    return took


def newest_file(host) -> str:
    metas = [json.loads(p.read_text()) for p in host.path("/srv/bench/db_backup").glob("*.json")]
    return max(metas, key=lambda m: m["epoch"])["file"]


def probed(env: dict, task: str = "backup:prod") -> tuple[float, dict]:
    """`doit <task>` through bench/_doit_probe.py with its trace: (wall seconds, the probe's data)."""
    out = Path(tempfile.mktemp(suffix=".json"))
    env = dict(env, BENCH_PROBE_OUT=str(out), BENCH_PROBE_TRACE="1", BENCH_PROBE_LAUNCHED=repr(time.time()))
    wall = timed([sys.executable, str(PROBE), "-f", str(DODO), task], env)
    data = json.loads(out.read_text())
    out.unlink()
    return wall, data


def breakdown(env: dict, ssh: list[str], plain_backup: list[str], plain_dump_only, repeat: int,
              engine: str = "mysql") -> None:
    """Where `doit backup:prod`'s extra time goes against the plain script: interleaved runs, the doit one
    through the probe (its start-up, each command over the session with its length, the Python between them,
    its exit), the plain one whole and as its parts (ssh through the master; the dump alone)."""
    rows: dict[str, list[float]] = {}
    tool = "pg_dump" if engine == "postgresql" else "mysqldump"
    counted = "COPY rows" if engine == "postgresql" else "rows"

    def add(key, value):
        rows.setdefault(key, []).append(value)
    for i in range(repeat):
        time.sleep(1.1)
        wall, p = probed(env)
        plain = timed(plain_backup)
        ssh_true = timed(ssh + ["true"])
        t0 = time.monotonic()
        plain_dump_only()
        dump_only = time.monotonic() - t0
        add("doit backup:prod, whole (wall, from outside)", wall)
        add(f"plain ssh '{tool} | gzip -1 > f', whole", plain)
        add("  plain: `ssh host true` through the master (its fixed cost)", ssh_true)
        add("  plain: the same dump run on the host without ssh (nsenter)", dump_only)
        add("doit: interpreter start until the probe runs", p["boot_s"])
        add("doit: imports, dodo.py, stages.ini, doit's graph (until the first node)", p["startup_s"])
        cmds = 0.0
        for ev in p["trace"]:
            key = "doit: " + (f"the dump ({tool} | python3 filter: zlib -1, sha256, inflate, {counted})"
                              if tool in ev["what"] else ev["what"])
            add(key, ev["seconds"])
            cmds += ev["seconds"]
        dump = sum(ev["seconds"] for ev in p["trace"] if tool in ev["what"])
        add("doit: all but the dump (whole - the dump's command)", wall - dump)
        add("plain: all but the dump (whole - the dump alone on the host)", plain - dump_only)
        add("the dump's pipeline, doit's / plain's (ratio, pair by pair)", dump / dump_only)
        nodes = p["last_node_end_s"] - p["first_node_s"]
        add("doit: the nodes, in all (checks and actions)", nodes)
        add("doit: commands over the session, in all (incl. the dump)", cmds)
        add("doit: Python between the commands (nodes - commands)", nodes - cmds)
        add("doit: exit (dep file, locks released, session closed)", p["exit_s"])
        add("doit: commands over the session, count", len([e for e in p["trace"] if not e["what"].startswith("(")]))
        print(f"breakdown run {i + 1}: doit {wall:.2f} s, plain {plain:.2f} s", flush=True)
    load = os.getloadavg()
    print(f"\nmedians of {repeat}, seconds (interleaved with the plain runs; load average {load[0]:.1f} "
          f"{load[1]:.1f} {load[2]:.1f}):\n\n| part | median | min-max |\n| --- | ---: | --- |")
    for key, vals in rows.items():
        if len(vals) < repeat:              # a command not in every run: its total per run
            key += f" (in {len(vals)} of {repeat} runs)"
        print(f"| {key} | {statistics.median(vals):.3f} | {min(vals):.3f}-{max(vals):.3f} |")
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "-f", str(DODO), "list"], env=env,
                         capture_output=True, text=True)
    imports = []
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 2:
            imports.append((int(m.group(2)), m.group(4)))
    imports.sort(reverse=True)
    print(f"\n`doit list`'s top-level imports (-X importtime, cumulative), {sum(us for us, _ in imports) / 1e3:.0f} ms "
          "in all:\n")
    for us, name in imports[:10]:
        print(f"    {us / 1e3:7.1f} ms  {name}")


def restore_breakdown(env: dict, marker: Path, plain_restore: list[str], plain_parts: dict, repeat: int,
                      engine: str = "mysql") -> None:
    """Where `doit restore:test`'s extra time goes against the plain script: interleaved runs, the doit one
    through the probe (start-up, each command over the session, the exit), the plain one whole and as its
    parts run on the host without ssh (nsenter): plain_parts is {label: a function that runs that part}."""
    rows: dict[str, list[float]] = {}

    def add(key, value):
        rows.setdefault(key, []).append(value)
    for i in range(repeat):
        marker.unlink(missing_ok=True)
        wall, p = probed(env, "restore:test")
        plain = timed(plain_restore)
        add("doit restore:test, whole (wall, from outside)", wall)
        add("plain ssh '" + ("dropdb; createdb; gunzip -c | psql --single-transaction" if engine == "postgresql"
                             else "gunzip -c | mysql") + "', whole", plain)
        for label, fn in plain_parts.items():
            t0 = time.monotonic()
            fn()
            add("  plain: " + label, time.monotonic() - t0)
        add("doit: interpreter start until the probe runs", p["boot_s"])
        add("doit: imports, dodo.py, stages.ini, doit's graph (until the first node)", p["startup_s"])
        load = max(p["trace"], key=lambda ev: ev["seconds"])
        cmds, per_run = 0.0, {}
        for ev in p["trace"]:              # a command sent more than once a run: its total, and how many times
            key = "doit: " + ("the load (python3 filter: sha256, inflate, prologue | psql)" if ev is load
                              else ev["what"])
            n, total = per_run.get(key, (0, 0.0))
            per_run[key] = (n + 1, total + ev["seconds"])
            cmds += ev["seconds"]
        for key, (n, total) in per_run.items():
            add(key + (f" (x{n}, in all)" if n > 1 else ""), total)
        add("doit: all but the load (whole - the load's command)", wall - load["seconds"])
        nodes = p["last_node_end_s"] - p["first_node_s"]
        add("doit: the nodes, in all (checks and actions)", nodes)
        add("doit: commands over the session, in all (incl. the load)", cmds)
        add("doit: Python between the commands (nodes - commands)", nodes - cmds)
        add("doit: exit (dep file, locks released, session closed)", p["exit_s"])
        add("doit: commands over the session, count", len([e for e in p["trace"] if not e["what"].startswith("(")]))
        print(f"restore breakdown run {i + 1}: doit {wall:.2f} s, plain {plain:.2f} s", flush=True)
    load = os.getloadavg()
    print(f"\nmedians of {repeat}, seconds (interleaved with the plain runs; load average {load[0]:.1f} "
          f"{load[1]:.1f} {load[2]:.1f}):\n\n| part | median | min-max |\n| --- | ---: | --- |")
    for key, vals in rows.items():
        if len(vals) < repeat:
            key += f" (in {len(vals)} of {repeat} runs)"
        print(f"| {key} | {statistics.median(vals):.3f} | {min(vals):.3f}-{max(vals):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=("mysql", "postgresql"), default="mysql")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ops", default="backup,restore", help="which pairs to time (a backup is taken anyway)")
    ap.add_argument("--breakdown", nargs="?", const="backup", choices=("backup", "restore"),
                    help="instead: where doit backup:prod's (or restore:test's) time goes against the plain "
                         "script's (--repeat runs)")
    args = ap.parse_args()
    # the package's bytecode, as pip writes it when it installs a package: an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module of it on every doit start (~60 ms here)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "tasks")], check=True,
                   stdout=subprocess.DEVNULL)
    base = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    pg = args.engine == "postgresql"
    hosts, host, work = (pg_setup if pg else setup)(base, args.rows)
    env = dict(os.environ, STAGES_INI=str(work / "stages.ini"), DSB_PASSWORD=PASSWORD)
    doit = [sys.executable, "-m", "doit", "-f", str(DODO)]
    ssh = ["ssh", "-F", str(hosts.ssh_config), "-p", str(host.port), f"deploy@{host.address}"]
    dump = PG_DUMP if pg else DUMP
    plain_backup = ssh + ["bash", "-c", f"'set -o pipefail; {dump} | gzip -1 -n -c > /srv/plain.sql.gz'"]
    if args.breakdown == "backup":
        timed(doit + ["backup:prod"], env)                   # warm-up: caches, the first backup, masters
        timed(plain_backup)
        def dump_only():
            host.run(["bash", "-c", f"set -o pipefail; {dump} | gzip -1 -n -c > /srv/plain.sql.gz"], check=True)
        breakdown(env, ssh, plain_backup, dump_only, args.repeat, args.engine)
        hosts.stop()
        return
    marker = host.path("/srv/bench/.deploy/db-test.json")
    pairs: dict[str, list[tuple[float, float]]] = {"backup": [], "restore": []}
    timed(doit + ["backup:prod"], env)                       # warm-up: caches, the first backup
    timed(plain_backup)
    for i in range(args.repeat if "backup" in args.ops else 0):
        time.sleep(1.1)                                       # backup_max_age = 1s: the newest is old now
        a, b = timed(doit + ["backup:prod"], env), timed(plain_backup)
        pairs["backup"].append((a, b))
        print(f"backup  run {i + 1}: doit {a:.2f} s, plain {b:.2f} s, ratio {a / b:.3f}", flush=True)
    if pg:       # a fresh database, as doit's restore makes one (DROP ... WITH (FORCE), CREATE ... OWNER)
        plain_restore = ssh + ["bash", "-c", f"'set -o pipefail; export {PG_ENV}; dropdb --force --if-exists dsb_test "
                               "&& createdb -O dsb_user dsb_test && gunzip -c /srv/bench/db_backup/" + newest_file(host)
                               + " | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d dsb_test >/dev/null'"]
    else:
        plain_restore = ssh + ["bash", "-c", "'set -o pipefail; gunzip -c /srv/bench/db_backup/"
                               + newest_file(host) + " | mysql --defaults-extra-file=/srv/plain.cnf dsb_test'"]
    marker.unlink(missing_ok=True)
    timed(doit + ["restore:test"], env)                      # warm-up: the archive restore:test's check asks for
    timed(plain_restore)
    if args.breakdown == "restore":
        backup = "/srv/bench/db_backup/" + newest_file(host)
        if pg:
            parts = {
                "dropdb --force + createdb (on the host, no ssh)": lambda: host.run(["bash", "-c", (
                    f"export {PG_ENV}; dropdb --force --if-exists dsb_test && createdb -O dsb_user dsb_test")],
                    check=True),
                "gunzip -c | psql --single-transaction into it (on the host)": lambda: host.run(["bash", "-c", (
                    f"set -o pipefail; export {PG_ENV}; gunzip -c {backup} | psql -X -q -v ON_ERROR_STOP=1 "
                    "--single-transaction -d dsb_test >/dev/null")], check=True),
                "sha256 of the backup, python3 hashlib (on the host)": lambda: host.run(["python3", "-c", (
                    "import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],'rb'); "
                    "[h.update(b) for b in iter(lambda: f.read(1<<20), b'')]"), backup], check=True),
                "COUNT(*) of every table, psql (on the host)": lambda: host.run(["bash", "-c", (
                    f"export {PG_ENV}; psql -X -At -d dsb_test -c 'SELECT count(*) FROM posts_post' "
                    "-c 'SELECT count(*) FROM posts_comment' >/dev/null")], check=True),
            }
        else:
            parts = {"gunzip -c | mysql (on the host)": lambda: host.run(["bash", "-c", (
                f"set -o pipefail; gunzip -c {backup} | mysql --defaults-extra-file=/srv/plain.cnf dsb_test")],
                check=True)}
        restore_breakdown(env, marker, plain_restore, parts, args.repeat, args.engine)
        hosts.stop()
        return
    for i in range(args.repeat if "restore" in args.ops else 0):
        marker.unlink(missing_ok=True)
        a, b = timed(doit + ["restore:test"], env), timed(plain_restore)
        pairs["restore"].append((a, b))
        print(f"restore run {i + 1}: doit {a:.2f} s, plain {b:.2f} s, ratio {a / b:.3f}", flush=True)
    load = os.getloadavg()
    print(f"\n{args.engine}, {args.rows:,} rows, median of {args.repeat}, seconds (load average {load[0]:.1f} "
          f"{load[1]:.1f} {load[2]:.1f}):")
    print("| operation | doit | plain script | ratio (median of pairs) |\n| --- | ---: | ---: | ---: |")
    for what, runs in pairs.items():
        if not runs:
            continue
        doit_s, plain_s = statistics.median(a for a, _ in runs), statistics.median(b for _, b in runs)
        ratio = statistics.median(a / b for a, b in runs)
        print(f"| {what} | {doit_s:.2f} | {plain_s:.2f} | {ratio:.2f}x |")
        print(f"  {what}: doit {min(a for a, _ in runs):.2f}-{max(a for a, _ in runs):.2f}, plain "
              f"{min(b for _, b in runs):.2f}-{max(b for _, b in runs):.2f}, pairs "
              + ", ".join(f"{a / b:.2f}" for a, b in runs))
    size = host.path("/srv/bench/db_backup/" + newest_file(host)).stat().st_size
    plain = host.path("/srv/plain.sql.gz").stat().st_size
    print(f"backup file: {size / 1e6:.1f} MB (plain gzip -1: {plain / 1e6:.1f} MB)")
    hosts.stop()
    if pg:
        Postgres().drop_role("dsb_user")                  # and its databases
        return
    db = MariaDB()
    for name in ("dsb_prod", "dsb_test"):
        db.drop_database(name)
    db.drop_user("dsb_user")


if __name__ == "__main__":
    main()
