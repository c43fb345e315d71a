"""DATABASE_URL -> a Django DATABASES entry, without a third-party dependency.

Accepted forms (what the deploy tool writes into shared/<stage>.env):

    mysql://user:password@host:port/name    user and password percent-encoded
    sqlite:////absolute/path.sqlite3
"""
from urllib.parse import unquote, urlsplit


def parse(url):
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like mysql://user:pw@host:port/name "
                         "or sqlite:////abs/path")
    scheme = scheme.lower()

    if scheme == "sqlite":
        # sqlite:////abs/path -> rest is "//abs/path": empty host, then the absolute path.
        if not rest.startswith("//"):
            raise ValueError("sqlite DATABASE_URL needs an absolute path: sqlite:////abs/path")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(rest[1:])}

    if scheme == "mysql":
        parts = urlsplit(url)
        name = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not name:
            raise ValueError("mysql DATABASE_URL needs a host and a database name: "
                             "mysql://user:pw@host:port/name")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("mysql DATABASE_URL has an invalid port") from None
        return {
            "ENGINE": "mysql.connector.django",
            "NAME": name,
            # The password may hold any character; only unquote, never strip or split it.
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(port or 3306),
            # Pure Python: the same code path on every host, whatever C library it has.
            "OPTIONS": {"use_pure": True},
        }

    raise ValueError(f"DATABASE_URL scheme {scheme!r} is not supported (use mysql or sqlite)")
