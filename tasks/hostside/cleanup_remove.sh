# shellcheck shell=sh
# steps/cleanup.py REMOVE: old releases, their stage-dir generations and the venvs no release uses; @RID@ is
# replaced by the release-id glob (layout.RELEASE_GLOB) before it is sent. Its arguments are documented there.
rels=$1; venvs=$2; n=$3; shift 3
while [ "$n" -gt 0 ]; do
  p=$1; shift; n=$((n - 1))
  [ -d "$p" ] && chmod -R u+w "$p" 2>/dev/null; rm -rf "$p"
done
for root; do
  for g in "$root"/*; do
    case ${g##*/} in @RID@|@RID@.tmp) ;; *) continue;; esac
    r=${g##*/}; r=${r%.tmp}
    if [ -d "$rels/$r" ] || [ ! -d "$g" ] || [ -L "$g" ]; then continue; fi
    chmod -R u+w "$g" 2>/dev/null; rm -rf -- "$g"
  done
done
[ -d "$venvs" ] || exit 0
for v in "$venvs"/*; do
  [ -d "$v" ] || continue
  used=
  for r in "$rels"/*; do [ "$r/.venv" -ef "$v" ] && used=1 && break; done
  [ -n "$used" ] || rm -rf "$v"
done
