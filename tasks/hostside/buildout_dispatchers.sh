# shellcheck shell=sh
# steps/buildout.py WRITE_DISPATCHERS: bin/<name> dispatchers (buildout_dispatcher.sh). Its arguments are
# documented there.
set -e
rel=$1; stage=$2; text=$3
mkdir -p "$rel/bin"
for f in "$rel/.buildout/$stage/bin"/*; do
  [ -f "$f" ] || continue
  d="$rel/bin/${f##*/}"
  [ -f "$d" ] && [ "$(cat "$d")" = "$text" ] && continue
  if [ -e "$d" ] || [ -L "$d" ]; then
    echo "$d is the release's own file, and buildout made a script of that name; rename one of them" >&2; exit 3
  fi
  printf '%s\n' "$text" > "$d.tmp"; chmod 755 "$d.tmp"; mv -f "$d.tmp" "$d"
done
