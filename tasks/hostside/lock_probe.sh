# shellcheck shell=sh
# runtime/lock.py PROBE (after watch_lib.sh): the lock's holder and its live sessions. Its arguments are
# documented there.
# SC2154: st, t0 are set by watch_lib.sh's stat_of, which comes first
# shellcheck disable=SC2154
[ -e "$1" ] || [ -L "$1" ] || { echo none; exit 0; }
o=; { IFS= read -r o < "$1/owner.json"; } 2>/dev/null; printf 'owner %s\n' "$o"
boot=; { read -r boot </proc/sys/kernel/random/boot_id; } 2>/dev/null
while read -r p t b; do [ "$b" = "$boot" ] && stat_of "$p" && [ "$t0" = "$t" ] && [ "$st" != Z ] && echo "alive $p"
done 2>/dev/null <"$1/sessions"; true
