# shellcheck shell=sh
# runtime/lock.py TAKE: takes the host's deploy lock, or says who holds it. Its arguments are documented there.
# SC2174: -m is meant for the deepest directory only (runtime/lock.py)
# shellcheck disable=SC2174
lock=$1; d=$3
unwritable() {
  p=$d; while [ ! -e "$p" ]; do p=$(dirname "$p"); done
  printf 'unwritable\t%s\t%s\t%s\t%s\t%s\n' "$(id -un)" "$(stat -c %U -- "$p")" "$(stat -c %a -- "$p")" "$p" "$1"
  exit 0
}
[ -e "$lock" ] && { echo held; exit 0; }   # a refused run writes nothing on the host
tmp=$d/.lock.$4
if [ -d "$d" ]; then
  for x in "$d"/.lock.*; do
    [ -e "$x" ] || [ -L "$x" ] || continue
    find "$d" -maxdepth 1 -name '.lock.*' -mmin +60 -exec rm -rf {} + 2>/dev/null; break
  done
  umask 022; made=$(mkdir -- "$tmp" 2>&1) || unwritable "$made"
else
  made=$(mkdir -p -m 755 -- "$d/${6:+$6/../}.lock.$4" 2>&1) || unwritable "$made"; umask 022
fi
s=$2; [ "$s" != - ] || s=${__dst_me-}
{ printf '%s' "$5" > "$tmp/owner.json" && { [ -z "$s" ] || printf '%s\n' "$s" > "$tmp/sessions"; }; } 2>/dev/null || {
  rm -rf "$tmp"; unwritable "cannot write the owner file: disk full?"; }
if mv -T -- "$tmp" "$lock" 2>/dev/null; then echo taken; else rm -rf "$tmp"; echo held; fi
