"""An app repository for the integration tests: examples/blog copied into a fresh git or hg repo, plus
commits that add migrations (a data migration, a failing one) and a served static file."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "blog"
ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@example.org", HGUSER="t <t@example.org>")

DATA_MIGRATION = '''from django.db import migrations


def mark(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    for post in Post.objects.all():
        post.body = post.body + " [rehearsed]"
        post.save(update_fields=["body"])


def unmark(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    for post in Post.objects.filter(body__endswith=" [rehearsed]"):
        post.body = post.body[: -len(" [rehearsed]")]
        post.save(update_fields=["body"])


class Migration(migrations.Migration):
    dependencies = [("posts", "0003_populate_post_slug")]
    operations = [migrations.RunPython(mark, unmark)]
'''

FAILING_MIGRATION = '''from django.db import migrations


def boom(apps, schema_editor):
    raise RuntimeError("this migration fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("posts", "0004_rehearsed")]
    operations = [migrations.RunPython(boom, migrations.RunPython.noop)]
'''


# engine = postgresql: the app talks to PostgreSQL through psycopg (the version the tool's own venv has)
PSYCOPG_REQUIREMENTS = "psycopg[binary]==3.3.9\ntyping-extensions==4.16.0\n"


class AppRepo:
    def __init__(self, path: Path, scm: str = "git", example: Path = EXAMPLE, engine: str = "mysql"):
        self.path, self.scm = path, scm
        shutil.copytree(example, path, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", "static_root"))
        requirements = path / "requirements.txt"
        if engine == "postgresql" and requirements.exists():
            requirements.write_text(requirements.read_text() + PSYCOPG_REQUIREMENTS)
        (path / "static").mkdir(exist_ok=True)
        (path / "static" / "version.txt").write_text("r1\n")
        if scm == "git":
            self._run("git", "init", "-q", "-b", "main")
        else:
            self._run("hg", "init")
        self.commit("r1")

    def _run(self, *argv: str) -> str:
        return subprocess.run(argv, cwd=self.path, env=ENV, check=True, capture_output=True, text=True).stdout

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        for name, text in (files or {}).items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        if self.scm == "git":
            self._run("git", "add", "-A")
            self._run("git", "commit", "-q", "-m", message)
            return self._run("git", "rev-parse", "HEAD").strip()
        self._run("hg", "addremove", "-q")
        self._run("hg", "commit", "-m", message)
        return self._run("hg", "log", "-r", ".", "--template", "{node}").strip()

    def add_data_migration(self, version: str = "r2") -> str:
        return self.commit(version, {"posts/migrations/0004_rehearsed.py": DATA_MIGRATION,
                                     "static/version.txt": version + "\n"})

    def add_failing_migration(self) -> str:
        return self.commit("r3", {"posts/migrations/0005_boom.py": FAILING_MIGRATION,
                                  "static/version.txt": "r3\n"})

# Fails only against production's settings: the test stage passes, the promotion's migration of prod
# fails half-way (MySQL DDL commits at once, so the new table stays behind).
PROD_ONLY_FAILURE = '''import os

from django.db import migrations, models


def fail_in_prod(apps, schema_editor):
    if os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".prod"):
        raise RuntimeError("this migration fails against production on purpose")


class Migration(migrations.Migration):
    dependencies = [("posts", "0003_populate_post_slug")]
    operations = [
        migrations.CreateModel("Tag", [("id", models.BigAutoField(primary_key=True)),
                                       ("name", models.CharField(max_length=40))]),
        migrations.RunPython(fail_in_prod, migrations.RunPython.noop),
    ]
'''
