# shellcheck shell=sh
# engines/base.py VERIFY: a backup file's integrity, sha256 and size. Its arguments are documented there.
set -e
gzip -t "$1" || { echo "gzip integrity check failed" >&2; exit 4; }
if [ "$2" = mysql ]; then
  last=$(gzip -dc "$1" | tail -n 1)
  case "$last" in "-- Dump completed"*) ;; *) echo "no completion line: the dump is incomplete" >&2; exit 4;; esac
fi
if [ "$2" = postgresql ]; then
  # pg_dump ends with its completion comment, then `--` and the \unrestrict line of its restricted mode
  gzip -dc "$1" | tail -n 6 | grep -qxF -- "-- PostgreSQL database dump complete" \
    || { echo "no completion line: the dump is incomplete" >&2; exit 4; }
fi
sha256sum "$1" | cut -d' ' -f1; stat -c %s "$1"
