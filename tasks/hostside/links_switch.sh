# shellcheck shell=sh
# steps/links.py SWITCH: a stage's link and env file switched by renames. Its arguments are documented there.
set -e; cd "$1"
p=.; set -f; IFS=/; for c in $4; do p=$p/$c; if [ -L "$p" ]; then
  unset IFS; echo "unsafe ${p#./} $(readlink -- "$p")" >&2; exit 76; fi; done; unset IFS; set +f
[ -d "$4" ] || mkdir -p -- "$4"
for x in "$2".tmp.*; do if [ -L "$x" ]; then rm -f -- "$x"; fi; done
[ -z "$6" ] || for x in "$6".tmp.*; do if [ -e "$x" ]; then rm -f -- "$x"; fi; done
e=$7; case $e in "?"*) e=${e#?}; [ -f "$e" ] || e=;; esac
if [ "$e" = - ]; then rm -f -- "$6"
elif [ -n "$e" ] && [ ! "$6" -ef "$e" ]; then
  [ -f "$e" ] || { echo "$e is missing" >&2; exit 1; }
  ln -f -- "$e" "$6.tmp.$5"; mv -f -- "$6.tmp.$5" "$6" || { rm -f -- "$6.tmp.$5"; exit 1; }
fi
if [ -z "$3" ]; then rm -f -- "$2"; exit 0; fi
tmp="$2.tmp.$5"; ln -s -- "$3" "$tmp"; mv -T -- "$tmp" "$2" || { rm -f -- "$tmp"; exit 1; }
