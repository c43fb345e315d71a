import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from blog import dburl

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-set-DJANGO_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "posts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "blog.urls"
WSGI_APPLICATION = "blog.wsgi.application"

# The deploy tool hands every stage its database as one URL (shared/<stage>.env);
# failing here, at import, beats a confusing error on the first query.
_database_url = os.environ.get("DATABASE_URL")
if not _database_url:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set: export DATABASE_URL=mysql://user:pw@host:port/name, postgres://... "
        "or sqlite:////abs/path.sqlite3"
    )
try:
    DATABASES = {"default": dburl.parse(_database_url)}
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# With option_file in stages.ini, DATABASE_URL carries no password: it stays in that MySQL option file on
# the host, which the deploy tool never reads. The app reads its [client] password (and user, if the URL
# names none) the way the mysql tools read the same file.
_option_file = os.environ.get("DATABASE_OPTION_FILE")
if _option_file and DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    try:
        _client = dburl.read_option_file(os.path.expanduser(_option_file))
    except OSError as exc:
        raise ImproperlyConfigured(f"DATABASE_OPTION_FILE {_option_file}: {exc.strerror}") from None
    if "password" in _client:
        DATABASES["default"]["PASSWORD"] = _client["password"]
    if not DATABASES["default"]["USER"] and _client.get("user"):
        DATABASES["default"]["USER"] = _client["user"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

STATIC_URL = "static/"
# Releases are read-only in spirit, so collected files go to the stage's own directory.
_stage_dir = os.environ.get("STAGE_DIR")
STATIC_ROOT = Path(_stage_dir) / "static" if _stage_dir else BASE_DIR / "static_root"

