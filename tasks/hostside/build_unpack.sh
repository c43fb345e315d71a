# shellcheck shell=sh
# steps/build.py UNPACK: a release's archive unpacked, its venv made; @EXCLUDES@ is replaced by the tool's own
# names (--exclude=...) before it is sent. Its arguments are documented there.
# SC2174: -m 700 is meant for the deepest directories only
# shellcheck disable=SC2174
set -e
rel=$1; art=$2; rev=$3; wheels=$4; meta=$5; venv=$6; venv_link=$7; ready=$8; metaf=$9; venv_done=${10}
envd=${11}; want=${12}; keycode=${13}; shift 13
if [ -d "$rel" ] && [ ! -f "$ready" ]; then chmod -R u+w "$rel" 2>/dev/null || true; rm -rf "$rel"; fi
[ -f "$ready" ] && exit 0
if [ -n "$venv" ] && [ ! -f "$venv_done" ]; then
  if [ -n "$want" ]; then
    have=$(python3 -I -S -c "$keycode") || have=
    [ "$have" = "$want" ] || { echo "python ${have:-?}" >&2; exit 4; }
  fi
  rm -rf "$venv"; mkdir -p "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$wheels" \
      -r "$wheels/requirements.txt"
  : > "$venv_done"
fi
for d; do set -- "$@" "$d/.."; shift; done
mkdir -p -m 700 -- "$envd" "$@"
tar -xzf "$art" -C "$rel" --no-same-owner --no-overwrite-dir --anchored @EXCLUDES@
if [ -d "$envd" ] && [ ! -L "$envd" ]; then echo "env_dir 700"; fi
printf '%s\n' "$rev" > "$rel/REVISION"
if [ -n "$venv" ]; then rm -rf "$rel/.venv"; ln -s "$venv_link" "$rel/.venv"; fi
printf '%s\n' "$meta" > "$metaf"
: > "$ready"
