"""steps/migration/migrate.py: the check run before migrating, from the project's migrate_command."""
from __future__ import annotations

import pytest

from doit_stages.config import split_command
from doit_stages.steps.migration.migrate import check_argv


@pytest.mark.parametrize("command, check", [
    ("python manage.py migrate --noinput", ["python", "manage.py", "migrate", "--check"]),
    ("./manage.py migrate --no-input posts", ["./manage.py", "migrate", "posts", "--check"]),
    ("python src/manage.py migrate", ["python", "src/manage.py", "migrate", "--check"]),
    ("python manage.py showmigrations", None),
    ("alembic upgrade head", None),
    ("sh -c 'flask db upgrade'", None),
    ("bin/django migrate --noinput", ["bin/django", "migrate", "--check"]),
    ("django-admin migrate", ["django-admin", "migrate", "--check"]),
    ("bin/django showmigrations", None),
    ("bin/instance migrate", None),          # another control-script name: the marker fallback
])
def test_check_argv(command, check):
    assert check_argv(split_command(command)) == check


def test_a_migration_refused_its_login_names_the_password_key_not_the_traceback():
    from doit_stages.config import Database
    from doit_stages.steps.migration.migrate import why_failed
    db = Database(name="test", engine="mysql", dbname="blog_test", user="blog", password_env="BLOG_TEST_DB_PASSWORD")
    err = ("Traceback (most recent call last):\n  ...\ndjango.db.utils.ProgrammingError: 1045 (28000): Access denied "
           "for user 'blog'@'localhost' (using password: YES)\n")
    assert why_failed(db, err).endswith(
        "the password comes from $BLOG_TEST_DB_PASSWORD ([database:test] password_env); "
        "export that user's password in BLOG_TEST_DB_PASSWORD, or fix [database:test] user")
    assert why_failed(db, "RuntimeError: boom\n") == why_failed(None, "RuntimeError: boom\n") == "RuntimeError: boom"
