"""What a value from stages.ini may look like before it reaches a command line, a path on a host or SQL.

Pure functions; each returns None when the value is fine, else the reason (config.py adds file, line,
section and key). The rules are deliberately narrower than what the tools accept: a value that could be
read as an option (a leading '-'), a path that leaves its directory, or a link that lands in the tool's own
state is refused before anything touches a host.
"""
from __future__ import annotations

import ipaddress
import posixpath
import re

# DNS names, IPv4 addresses and ssh_config aliases: never a leading '-' (ssh would read an option)
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})$")
# POSIX portable user names (what useradd accepts by default), never a leading '-'
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")
PATH_PART_RE = re.compile(r"^[A-Za-z0-9_@+](?:[A-Za-z0-9._@+ -]*[A-Za-z0-9._@+-])?$")
DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
DBNAME_RE = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$-]{0,63}$")
DBUSER_RE = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_.$@+-]{0,79}$")
# the tool's own directories under deploy_root: no stage link may live there
RESERVED_TOP = ("releases", "shared", "db_backup", ".deploy")
# names inside a release that the tool itself writes: no shared link may replace one
RESERVED_IN_RELEASE = (".venv", "REVISION")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "0.0.0.0"}
PG_NAME_MAX = 63   # PostgreSQL's NAMEDATALEN - 1
PATH_CHARS = "letters, digits, spaces and . _ @ + - (no part starting with '-', no '..')"


def hostname_problem(name: str) -> str | None:
    if ":" in name:  # an IPv6 address (ssh://[::1]:22)
        try:
            ipaddress.IPv6Address(name)
            return None
        except ValueError:
            return f"{name!r} is not a valid IPv6 address"
    if not HOSTNAME_RE.match(name) or ".." in name:
        return f"host name {name!r} must be letters, digits, '.', '_' or '-', and may not start with '-'"
    return None


def user_problem(user: str) -> str | None:
    if not USER_RE.match(user):
        return f"user name {user!r} must be letters, digits, '.', '_' or '-' (at most 32), and may not start with '-'"
    return None


def relative_path_problem(value: str) -> str | None:
    """A path relative to deploy_root or a release: plain parts only."""
    if not value or value.startswith("/"):
        return f"{value!r} must be a relative path"
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return f"{value!r} must be a plain relative path: no empty part, '.' or '..'"
    bad = [p for p in parts if not PATH_PART_RE.match(p) and not (p.startswith(".") and PATH_PART_RE.match(p[1:]))]
    if bad:
        return f"{value!r}: {bad[0]!r} may hold only {PATH_CHARS}"
    return None


def absolute_path_problem(value: str) -> str | None:
    """An absolute path on a host (deploy_root, a sqlite file): plain parts, and not the root itself."""
    if not value.startswith("/") or value.strip("/") == "":
        return f"{value!r} must be an absolute path below /, e.g. /srv/app"
    return relative_path_problem(value.lstrip("/"))


def shared_name_problem(value: str) -> str | None:
    """A shared_dirs / shared_files / stage_dirs entry, linked into (or created for) every release."""
    problem = relative_path_problem(value)
    if problem:
        return problem
    top = value.split("/")[0]
    if top in RESERVED_IN_RELEASE or top.startswith(".deploy"):
        return f"{value!r} would replace {top}, which the tool writes into every release; pick another name"
    return None


def link_problem(link: str, stage: str, other_links: dict[str, str]) -> str | None:
    """A stage's live link: below deploy_root, at least dir/name, outside the tool's own directories and
    not inside (or around) another stage's link."""
    problem = relative_path_problem(link)
    if problem or len(link.split("/")) < 2:
        return f"{link!r} must be a relative path below deploy_root, like sites/{stage}"
    top = link.split("/")[0]
    if top in RESERVED_TOP:
        return (f"{link!r} is inside {top}/, which the tool itself manages (releases/, shared/, db_backup/, "
                f".deploy/ are reserved); use e.g. sites/{stage}")
    for other_stage, other in other_links.items():
        if link == other or link.startswith(other + "/") or other.startswith(link + "/"):
            return f"{link!r} overlaps the link {other} of stage {other_stage}; give each stage its own link"
    return None


def settings_problem(value: str) -> str | None:
    if value and not DOTTED_RE.match(value):
        return f"{value!r} is not a Python module path like blog.settings.prod"
    return None


def host_file_problem(value: str) -> str | None:
    """A file on the host (a MySQL option file, libpq's password file): absolute or below the login user's
    home (~/)."""
    rest = value[2:] if value.startswith("~/") else value[1:] if value.startswith("/") else None
    if rest is None:
        return f"{value!r} must be an absolute path or start with ~/ (a file on the host)"
    return relative_path_problem(rest)


def health_url_problem(url: str) -> str | None:
    if url and (not re.match(r"^https?://[^\s]+$", url) or any(ord(c) < 32 for c in url)):
        return f"{url!r} must be an http:// or https:// URL without spaces ({{host}} is replaced by the host)"
    return None


def db_value_problem(kind: str, value: str, engine: str = "mysql") -> str | None:
    if kind == "name" and not DBNAME_RE.match(value):
        return f"{value!r} must be letters, digits, '_', '$' or '-' (at most 64), not starting with '-'"
    if kind == "user" and not DBUSER_RE.match(value):
        return f"{value!r} must be letters, digits or _ . $ @ + - (at most 80), not starting with '-'"
    if kind in ("name", "user") and engine == "postgresql" and len(value) > PG_NAME_MAX:
        # the server would cut it to 63 and name another database or role than the tool checked
        return f"{value!r} is longer than PostgreSQL's {PG_NAME_MAX} characters for a name"
    if kind == "host":
        return hostname_problem(value)
    return None


def control_char_problem(value: str) -> str | None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "holds a control character (a line break, tab or NUL); remove it"
    return None


def canonical_db_host(host: str) -> str:
    """Names that reach the same server from the same machine compare equal (localhost = 127.0.0.1)."""
    h = host.strip().lower().rstrip(".")
    if h in LOOPBACK_NAMES:
        return "loopback"
    try:
        return "loopback" if ipaddress.ip_address(h).is_loopback else str(ipaddress.ip_address(h))
    except ValueError:
        return h


def database_identity(engine: str, host: str, port: int, name: str, backup_host: str, path: str) -> tuple:
    """What makes two [database:] sections the same database: server and database (mysql, postgresql), or
    the file on its host (sqlite). One port serves one server, whatever engine a section names; the name
    compares without case (a PostgreSQL name differing only in case is refused too: the safer mistake)."""
    if engine == "sqlite":
        return ("sqlite", backup_host, posixpath.normpath(path))
    return ("server", canonical_db_host(host), int(port), name.lower())
