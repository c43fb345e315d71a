#!/usr/bin/env python3
"""What the migration rehearsal costs on top of a plain migrate, on the sample blog.

    .venv/bin/python bench/bench_rehearsal.py [--repeat 9]

Run as root (tests/lab/sshd.py: one fake host, an sshd on 127.0.0.1 in its own mount namespace; MariaDB at
127.0.0.1:3306). One `doit deploy:test` sets the host up (release built, env file written). Then, paired
and alternated (A B A B ...), each on the same freshly reset test database:

    A  the rehearsal: steps/rehearsal.rehearse (one Python process on the host: plan, SQL, then Django's
       migrate; from here: tunnel, schema and size reads, the write probe; the report written)
    B  what migrate:test ran before: steps/migrate.run_migrations (one `manage.py migrate --noinput`)

both over the same SSH transport, timed in this process (the reset between runs is not timed).
Two scenarios: "empty" (the blog's 0001-0003 on an empty copy: every table new, nothing to probe) and
"0004 on 1000 rows" (production at 0003 with 1000 posts, 0004 adds two columns: probe, tunnel and sizes
all at work). Prints the medians of A, B, A-B and A/B; the target is A <= B * 1.1 + 1 s.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lab.apprepo import AppRepo  # noqa: E402
from tests.lab.common import NASTY_PASSWORD  # noqa: E402
from tests.lab.mariadb import MariaDB  # noqa: E402
from tests.lab.project import PASSWORD_ENV, Project  # noqa: E402
from tests.lab.rehearsal_migrations import files  # noqa: E402
from tests.lab.sshd import SshHosts  # noqa: E402


def reset(db: MariaDB, test: str, prod: str) -> None:
    """The test database := production's content (a small dump through the mysql client)."""
    db.drop_database(test)
    db.create_database(test)
    dump = subprocess.run(["mysqldump", "--no-defaults", "-h127.0.0.1", "-uroot", prod], check=True,
                          capture_output=True).stdout
    subprocess.run(["mysql", "--no-defaults", "-h127.0.0.1", "-uroot", test], input=dump, check=True)


def measure(args, p: Project, db: MariaDB, prod: str, test: str) -> tuple[list[float], list[float]]:
    import os
    os.environ[PASSWORD_ENV] = NASTY_PASSWORD
    from doit_stages.config import load_config
    from doit_stages.session import Session
    from doit_stages.steps.migration.migrate import run_migrations
    from doit_stages.steps.migration.rehearsal import rehearse

    plan = Session(load_config(p.ini))
    stage = plan.config.stages["test"]
    rid = p.links("sites/test")[0].rsplit("/", 1)[1]
    t = plan.connections.get(stage.hosts[0])
    a, b = [], []
    for i in range(args.repeat + 1):          # the first pair warms up and is not counted
        for kind in ("A", "B"):
            reset(db, test, prod)
            start = time.monotonic()
            if kind == "A":
                rehearse(t, plan.layout, plan.config, stage, rid, "bench")
            else:
                run_migrations(t, plan.layout, plan.config, stage, rid)
            took = time.monotonic() - start
            if i:
                (a if kind == "A" else b).append(took)
    plan.connections.close_all()
    return a, b


def summary(name: str, a: list[float], b: list[float]) -> str:
    diff = [x - y for x, y in zip(a, b)]
    ratio = [x / y for x, y in zip(a, b)]
    med = statistics.median
    ok = med(a) <= 1.1 * med(b) + 1.0
    return (f"| {name} | {med(b):.2f} | {med(a):.2f} | {med(diff):+.2f} | {med(ratio):.2f} | "
            f"{min(diff):+.2f} .. {max(diff):+.2f} | {'yes' if ok else 'NO'} |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    db = MariaDB()
    db.ensure_running()
    lines = ["| scenario | plain migrate B, s | rehearsal A, s | A-B (median) | A/B (median) | A-B range | "
             "A <= 1.1 B + 1 s |", "|---|---:|---:|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        hosts = SshHosts(base / "hosts", names=("web1",))
        prod, test, user = "dst_bench_prod", "dst_bench_test", "dst_bench_u"
        try:
            for d in (prod, test):
                db.create_database(d, replace=True)
            db.create_user(user, NASTY_PASSWORD, [prod, test])
            repo = AppRepo(base / "blog")
            (base / "work").mkdir()
            p = Project(base / "work", repo.path, [hosts["web1"]], hosts.ssh_config, prod, test, user,
                        NASTY_PASSWORD)
            p.ok("deploy:test")
            lines.append(summary("empty copy, 0001-0003 (tables new)", *measure(args, p, db, prod, test)))
            p.ok("promote:staging")
            db.query(prod, "INSERT INTO posts_post (title, slug, body, created) VALUES ('t', 't', 'b', NOW())")
            while db.row_counts(prod)["posts_post"] < 1000:
                db.query(prod, "INSERT INTO posts_post (title, slug, body, created) SELECT title, slug, body, "
                               "created FROM posts_post LIMIT 1000")
            name = "posts/migrations/0004_post_subtitle.py"
            repo.commit("0004", {name: files()[name]})
            p.write(max_age="1s")
            time.sleep(1.1)
            p.ok("deploy:test")
            lines.append(summary("0004 AddField x2 on 1000 rows (probe on)", *measure(args, p, db, prod, test)))
        finally:
            hosts.stop()
            for d in (prod, test):
                db.drop_database(d)
            db.drop_user(user)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
