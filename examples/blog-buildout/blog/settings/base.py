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
        "DATABASE_URL is not set: export DATABASE_URL=mysql://user:pw@host:port/name "
        "or sqlite:////abs/path.sqlite3"
    )
try:
    DATABASES = {"default": dburl.parse(_database_url)}
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

STATIC_URL = "static/"
# Releases are read-only in spirit, so collected files go to the stage's own directory.
_stage_dir = os.environ.get("STAGE_DIR")
STATIC_ROOT = Path(_stage_dir) / "static" if _stage_dir else BASE_DIR / "static_root"

