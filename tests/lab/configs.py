"""A run's configuration built directly as the dataclasses (no stages.ini read), for the tests of one step on
plain inputs: a MySQL database whose password comes from a variable, a one-stage config around it."""
from __future__ import annotations

import os
from pathlib import Path

from doit_stages.config import Config, Database, Host, Project, Stage

# Every character that a shell, an option-file reader or a URL parser treats specially ({marker}: a file
# that appears if anything runs the value as a command).
NASTY = " p w;$(touch {marker})`touch {marker}`'\"#\\x:/@%?&|<>*!{{}}[]~ "


def mysql_db(password_env: str = "DST_PURE_PW", **kw) -> Database:
    """[database:prod] on db.example:3307, its password read from password_env now (set it first)."""
    args = dict(name="prod", engine="mysql", dbname="blog_prod", host="db.example", port=3307, user="blog",
                password_env=password_env, secret=os.environ.get(password_env, "") if password_env else "")
    args.update(kw)
    return Database(**args)


def make_config(db: Database | None, stage_kw: dict | None = None) -> tuple[Config, Stage]:
    """A config of one stage, test, on this machine, with db (or none) as its database."""
    project = Project(name="blog", source=Path("/nonexistent"), deploy_root="/srv/blog", build="none")
    kw = dict(name="test", hosts=(Host("local"),), link="sites/test", settings="blog.settings.test",
              database=db.name if db else None)
    stage = Stage(**{**kw, **(stage_kw or {})})
    return Config(Path("/nonexistent/stages.ini"), project, {db.name: db} if db else {}, {"test": stage}), stage
