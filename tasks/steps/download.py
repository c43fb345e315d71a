"""download: a host pulls an artifact from the S3 store itself, with curl and a presigned URL.

The URL is a bearer credential, so it never goes on a command line (where /proc/*/cmdline and `ps` show
it) nor into a file on the host: curl reads it as `url = "..."` from its standard input (`--config -`),
and `-q` first keeps a ~/.curlrc (say, one with --verbose) from printing it. Only the store's address
(scheme://host:port) ever appears in a message. The digest is checked in the same command.
"""
from __future__ import annotations

import re
from typing import Callable

from ..errors import StepError
from ..transport import Transport

# $1: where the file goes. curl's config (the URL) arrives on stdin. Prints the file's sha256.
FETCH = ('curl -q --config - --fail --silent --show-error --globoff --proto =http,https --retry 2 '
         '--connect-timeout 10 --speed-limit 1024 --speed-time 60 --output "$1" && sha256sum -- "$1"')

# what curl (or a proxy) might echo back of a URL: scrubbed from messages whatever it is
URL_RE = re.compile(r"(?i)\b(?:https?|s3)://\S+")


def curl_config(url: str) -> bytes:
    """curl's config text for one URL: double-quoted, backslash and quote escaped (curl's own rules)."""
    if any(c in url for c in "\r\n\0"):
        raise ValueError("a URL cannot hold a line break or NUL")
    return ('url = "' + url.replace("\\", "\\\\").replace('"', '\\"') + '"\n').encode()


def scrub(text: str, address: str) -> str:
    """curl's last error line with any URL replaced by the store's address."""
    last = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "")
    return URL_RE.sub(address, last.strip())


class StoreDownload:
    """The `source` of upload_release for artifact_store = s3://...: every host downloads from the store.

    presign(name) -> URL is called once per host and artifact, right before that host's download."""
    verifies = True

    def __init__(self, where: str, address: str, presign: Callable[[str], str], digests: dict[str, str]):
        self.where, self.address, self.presign, self.digests = where, address, presign, digests

    def fetch(self, t: Transport, name: str, remote: str) -> None:
        code, out, err = t.call(["sh", "-c", FETCH, "sh", remote], input=curl_config(self.presign(name)))
        if code == 127 or (code != 0 and "curl: not found" in err):
            raise StepError(f"{t.host}: upload: curl is not installed on the host; install it "
                            "(artifact_store = s3 downloads with curl)")
        if code != 0:
            t.call(["rm", "-f", "--", remote])
            raise StepError(f"{t.host}: upload: cannot download {name} from the artifact store {self.where} "
                            f"({self.address}): {scrub(err, self.address) or f'curl exited {code}'}; "
                            "make sure this host reaches the store")
        digest = out.split()[0] if out.split() else ""
        if digest != self.digests[name]:
            t.call(["rm", "-f", "--", remote])
            raise StepError(f"{t.host}: upload: {name} from the artifact store {self.where} has sha256 "
                            f"{digest[:12]}, expected {self.digests[name][:12]}; run again (it is uploaded anew)")
