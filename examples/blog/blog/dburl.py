"""DATABASE_URL -> a Django DATABASES entry, without a third-party dependency.

Accepted forms (what the deploy tool writes into shared/<stage>.env):

    mysql://user:password@host:port/name    user and password percent-encoded
    postgres://user:password@host:port/name[?sslmode=require]   (or postgresql://); without a password,
                                            libpq reads it from the file PGPASSFILE names (or ~/.pgpass)
    sqlite:////absolute/path.sqlite3
"""
from urllib.parse import parse_qs, unquote, urlsplit


def parse(url):
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like mysql://user:pw@host:port/name, "
                         "postgres://user:pw@host:port/name or sqlite:////abs/path")
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

    if scheme in ("postgres", "postgresql"):
        return _postgres(url)

    raise ValueError(f"DATABASE_URL scheme {scheme!r} is not supported (use mysql, postgres or sqlite)")


def _postgres(url):
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not name:
        raise ValueError("postgres DATABASE_URL needs a host and a database name: "
                         "postgres://user:pw@host:port/name")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("postgres DATABASE_URL has an invalid port") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"sslmode"})
    if unknown:
        raise ValueError(f"postgres DATABASE_URL: unknown parameter {unknown[0]!r} (only sslmode)")
    options = {"sslmode": query["sslmode"][-1]} if query.get("sslmode") else {}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        # Empty: libpq itself reads the password file PGPASSFILE names (the deploy tool's passfile).
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port or 5432),
        "OPTIONS": options,
    }


def read_option_file(path, group="client"):
    """The [group] options of a MySQL/MariaDB option file, read as the mysql command-line tools read it
    (mysys my_default.c), so the same file serves mysqldump and the app: '#' starts a comment outside
    quotes, the value is trimmed, ONE pair of matching quotes around it is stripped, and the escapes
    \\n \\t \\r \\b \\s \\" \\' \\\\ are decoded (any other backslash is kept). `!include FILE` is followed.
    (mysql-connector-python's own option_files= reader keeps the quotes and decodes nothing.)"""
    options, current = {}, None
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for raw in lines:
        line = raw.lstrip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!include "):
            options.update(read_option_file(line[len("!include "):].strip(), group))
            continue
        if line.startswith("["):
            current = line[1:line.find("]")].strip() if "]" in line else None
            continue
        if current != group:
            continue
        line = _drop_comment(line)
        key, sep, value = line.partition("=")
        key = key.strip().replace("-", "_")
        options[key] = _option_value(value.strip()) if sep else ""
    return options


def _drop_comment(line):
    quote, escape = None, False
    for i, c in enumerate(line):
        if c in "'\"" and not escape:
            quote = c if quote is None else (None if quote == c else quote)
        if quote is None and c == "#":
            return line[:i]
        escape = bool(quote) and c == "\\" and not escape
    return line


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", '"': '"', "'": "'", "\\": "\\"}


def _option_value(value):
    if len(value) > 1 and value[0] in "'\"" and value[0] == value[-1]:
        value = value[1:-1]
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i < len(value) - 1:
            i += 1
            out.append(_ESCAPES.get(value[i], "\\" + value[i]))
        else:
            out.append(c)
        i += 1
    return "".join(out)
