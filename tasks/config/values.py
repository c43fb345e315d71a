"""Pure parsers of one value from stages.ini: a host, a duration, a list, an S3 endpoint, HTTP headers (the
S3 store's own format is parsed by config_model.parse_store, beside S3Store, and a command by
config_model.split_command).

Each takes the text and returns the value or raises ValueError with the reason; the section readers
(config_project, config_database, config_stage) add file, line, section, key and what to write instead.
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from . import rules
from .model import Host

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
DURATION_RE = re.compile(r"^(\d+)\s*([smhd]?)$")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"     # an HTTP token (RFC 9110)
# headers that frame a request: a GET that claims a body makes the server wait for it (a false timeout)
FRAMING_HEADERS = ("content-length", "transfer-encoding")


def parse_host(spec: str) -> Host:
    """'local' or 'ssh://[user@]host[:port]'; raises ValueError with the reason."""
    spec = spec.strip()
    if spec == "local":
        return Host("local")
    if not spec.startswith("ssh://"):
        raise ValueError(f"host {spec!r} is neither 'local' nor 'ssh://[user@]host[:port]'")
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"host {spec!r} has a bad port") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise ValueError(f"host {spec!r} is not of the form ssh://[user@]host[:port]")
    # ssh would read a user or host starting with '-' as an option (-oProxyCommand=...): refused here
    problem = rules.hostname_problem(parts.hostname) or (
        rules.user_problem(parts.username) if parts.username is not None else None)
    if problem:
        raise ValueError(f"host {spec!r}: {problem}")
    return Host(spec, parts.hostname, parts.username, port)


# names of this machine's loopback that every resolver gives (127.0.0.2 and the like may be other sockets)
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def host_key(host: Host) -> tuple:
    """What can be told from the config alone about which machine and login a host is: the name with case,
    a trailing dot and IPv6 spellings normalised, localhost = 127.0.0.1 = ::1, then port and user as
    written. Two hosts with one key are one login on one machine; two keys may still be one machine (DNS,
    ssh_config aliases, an unwritten port or user that ssh_config fills in): those cannot be told here."""
    if host.local:
        return ("local",)
    name = host.hostname.lower().rstrip(".")
    try:
        name = ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    return ("ssh", "localhost" if name in LOOPBACK else name, host.port, host.user)


def parse_duration(text: str) -> int:
    m = DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 24h or 2d")
    return int(m.group(1)) * DURATION_UNITS[m.group(2)]


def split_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def check_endpoint(text: str) -> None:
    """s3_endpoint: http(s)://host[:port], nothing else (the URLs are signed for exactly this address)."""
    parts = urlsplit(text)
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{text!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{text!r} is not http(s)://host[:port]")


def parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """health_headers: 'Name: value, Name: value' -> ((name, value), ...). A comma starts the next header
    only when `Name:` follows it, so a value may hold commas (Accept: text/html, */*). Values are printable
    ASCII (no CR/LF: nothing can be smuggled into the request); raises ValueError with the reason."""
    if not text.strip():
        return ()
    out, seen = [], set()
    for part in re.split(rf",\s*(?={HEADER_NAME}\s*:)", text.strip()):
        name, colon, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not re.fullmatch(HEADER_NAME, name):
            raise ValueError(f"{part.strip()!r} is not a header 'Name: value'")
        if any(not (32 <= ord(c) < 127 or c == "\t") for c in value):
            raise ValueError(f"the value of {name} holds a line break or a character that is not printable "
                             "ASCII (separate headers with ',')")
        if name.lower() in FRAMING_HEADERS:
            raise ValueError(f"{name} would make the health check's GET wait for a body; remove it")
        if name.lower() in seen:
            raise ValueError(f"{name} is given twice")
        seen.add(name.lower())
        out.append((name, value))
    return tuple(out)
