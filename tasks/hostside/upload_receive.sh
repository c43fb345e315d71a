# shellcheck shell=sh
# steps/upload.py RECEIVE: an artifact from stdin, checked by its sha256. Its arguments are documented there.
# SC2015: the cat of stdin runs when either the mkdir or the first cat fails
# shellcheck disable=SC2015
art=$1; sha=$2; proof=$3; meta=$4
{ [ -d "${art%/*}" ] || mkdir -p "${art%/*}"; } && cat > "$art.partial" || { cat > /dev/null; exit 1; }
set -e
got=$(sha256sum "$art.partial"); got=${got%% *}
echo "$got"
[ "$got" = "$sha" ] || { rm -f "$art.partial"; exit 0; }
mv -f "$art.partial" "$art"
[ -n "$meta" ] || exit 0
if [ -e "$proof.tmp" ] || [ -L "$proof.tmp" ]; then rm -f -- "$proof.tmp"; fi
(umask 133; printf '%s' "$meta" > "$proof.tmp"); mv -f "$proof.tmp" "$proof"
