# shellcheck shell=sh
# steps/cleanup.py REMOVE: old releases and the venvs no release uses. Its arguments are documented there.
rels=$1; venvs=$2; shift 2
for p in "$@"; do [ -d "$p" ] && chmod -R u+w "$p" 2>/dev/null; rm -rf "$p"; done
[ -d "$venvs" ] || exit 0
for v in "$venvs"/*; do
  [ -d "$v" ] || continue
  used=
  for r in "$rels"/*; do [ "$r/.venv" -ef "$v" ] && used=1 && break; done
  [ -n "$used" ] || rm -rf "$v"
done
