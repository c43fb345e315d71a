#!/usr/bin/env python3
"""The rehearsal with its reads and write probe on the host (option_file) vs from the deploying machine
through the SSH tunnel (password_env), on the same data.

    .venv/bin/python bench/bench_probe_side.py [--rows 200000] [--repeat 3]

Run as root (tests/lab/sshd.py: one fake host, an sshd on 127.0.0.1 in its own mount namespace; MariaDB at
127.0.0.1:3306). Production holds the blog at 0003 with --rows posts; the release has 0004 (two instant
AddFields) and 0005 (title VARCHAR -> LONGTEXT, a table copy) pending. Then, alternated (T H T H ...),
each on the test database freshly reset to production's content (not timed), steps/rehearsal.rehearse over
the same SSH transport, with the stage's env file of that variant:

    T  password_env: schema, sizes and probe from here, mysql-connector through `ssh -O forward`
    H  option_file:  schema in the runner's plan, sizes and probe in the runner, on the host

Prints, per variant, the median rehearsal time, the median time around the migrations (the rehearsal less
Django's own time of each migration: what the probe's side costs, without the table copy's variance), and
each run's measured 0005 stall, 0004 stall and probe writes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]     # the tests' lab (tests.lab), the other benches

from bench_rehearsal import reset  # noqa: E402

from tests.lab.apprepo import AppRepo  # noqa: E402
from tests.lab.common import NASTY_PASSWORD  # noqa: E402
from tests.lab.mariadb import MariaDB, write_option_file  # noqa: E402
from tests.lab.project import PASSWORD_ENV, Project  # noqa: E402
from tests.lab.rehearsal_migrations import files  # noqa: E402
from tests.lab.sshd import DEPLOY_USER, SshHosts  # noqa: E402

CNF = "/srv/bench-db.cnf"


def setup(base: Path, hosts: SshHosts, db: MariaDB, rows: int, names: tuple[str, str, str]) -> Project:
    prod, test, user = names
    repo = AppRepo(base / "blog")
    (base / "work").mkdir()
    p = Project(base / "work", repo.path, [hosts["web1"]], hosts.ssh_config, prod, test, user, NASTY_PASSWORD)
    p.ok("deploy:test")
    p.ok("promote:staging")
    db.query(prod, "INSERT INTO posts_post (title, slug, body, created) VALUES ('a title of some forty "
                   "characters, padded', 'a-title', 'body', NOW())")
    while (have := db.row_counts(prod)["posts_post"]) < rows:
        db.query(prod, "INSERT INTO posts_post (title, slug, body, created) SELECT title, slug, body, created "
                       f"FROM posts_post LIMIT {min(have, rows - have)}")
    repo.commit("0004 0005", {f"posts/migrations/{n}.py": files()[f"posts/migrations/{n}.py"]
                              for n in ("0004_post_subtitle", "0005_post_title_text")})
    p.write(max_age="1s")
    time.sleep(1.1)
    p.ok("deploy:test")
    write_option_file(hosts["web1"].path(CNF), user, NASTY_PASSWORD, owner=DEPLOY_USER)
    (base / "work" / "stages-optfile.ini").write_text(
        p.ini.read_text().replace(f"password_env = {PASSWORD_ENV}", f"option_file = {CNF}"))
    return p


def measure(args, p: Project, db: MariaDB, prod: str, test: str) -> dict[str, list[dict]]:
    from doit_stages.config import load_config
    from doit_stages.executor import Connections
    from doit_stages.layout import Layout
    from doit_stages.runtime.common import write_file
    from doit_stages.steps.environment import env_file
    from doit_stages.steps.migration.rehearsal import rehearse

    environ = dict(os.environ, **{PASSWORD_ENV: NASTY_PASSWORD})
    configs = {"T": load_config(p.ini, environ), "H": load_config(p.workdir / "stages-optfile.ini", environ)}
    stage = configs["T"].stages["test"]
    rid = p.links("sites/test")[0].rsplit("/", 1)[1]
    conns = Connections(configs["T"].project.ssh_config)
    t = conns.get(stage.hosts[0])
    out: dict[str, list[dict]] = {"T": [], "H": []}
    try:
        for i in range(args.repeat + 1):          # the first pair warms up and is not counted
            for kind, config in configs.items():
                layout = Layout(config.project.deploy_root)
                write_file(t, layout.env_file("test"), env_file(layout, config, stage), "600")
                reset(db, test, prod)
                start = time.monotonic()
                rep = rehearse(t, layout, config, stage, rid, "bench")
                took = time.monotonic() - start
                stall = {m["name"].split(".")[1][:4]: m["max_write_stall"] for m in rep["migrations"]}
                if i:
                    out[kind].append({"s": took, "0004": stall["0004"], "0005": stall["0005"],
                                      "migrate": sum(m["seconds"] or 0 for m in rep["migrations"]),
                                      "writes": rep["probe"]["writes"], "on": rep["probe"]["runs_on"]})
    finally:
        conns.close_all()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    db = MariaDB()
    db.ensure_running()
    names = ("dst_bps_prod", "dst_bps_test", "dst_bps_u")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        hosts = SshHosts(base / "hosts", names=("web1",))
        try:
            for d in names[:2]:
                db.create_database(d, replace=True)
            db.create_user(names[2], NASTY_PASSWORD, list(names[:2]))
            p = setup(base, hosts, db, args.rows, names)
            res = measure(args, p, db, names[0], names[1])
        finally:
            hosts.stop()
            for d in names[:2]:
                db.drop_database(d)
            db.drop_user(names[2])
    print(f"| probe ({args.rows} rows, 0004 + 0005) | rehearsal, s (median) | rehearsal - Django's migration "
          "times, s (median) | runs, s | 0005 stall, s | 0004 stall, s | probe writes |")
    print("|---|---:|---:|---|---|---|---|")
    for kind, label in (("T", "tunnel, from the deploying machine"), ("H", "on the host, in the runner")):
        runs, med = res[kind], statistics.median
        print(f"| {label} | {med(r['s'] for r in runs):.2f} | {med(r['s'] - r['migrate'] for r in runs):.2f} | "
              + ", ".join(f"{r['s']:.2f}" for r in runs) + " | "
              + " | ".join(", ".join(f"{r[k]:.2f}" if r[k] is not None else "-" for r in runs)
                           for k in ("0005", "0004")) + " | " + ", ".join(str(r["writes"]) for r in runs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
