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
