# shellcheck shell=sh
# watchdog.py END (after watch_lib.sh): ends what a dead run's sessions still run. Its arguments are
# documented there.
# SC3043: `local` (tasks/hostside/__init__.py)
# SC2086: pid lists are split on purpose
# SC2154: st, t0, ks are set by watch_lib.sh's functions, which come first
# shellcheck disable=SC3043,SC2086,SC2154
cmd_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | cut -c1-160; }
what_of() { local p c k; p=$1; c=$(cmd_of "$1")
  case $c in "sh "|"sh -c stat_of() "*) kids_of "$1"; for k in $ks; do p=$k; c=$(cmd_of "$k"); break; done;; esac
  printf '%s\t%s' "$p" "$c"; }
boot=; { read -r boot </proc/sys/kernel/random/boot_id; } 2>/dev/null; roots=
while read -r p t b; do [ "$b" = "$boot" ] && stat_of "$p" && [ "$t0" = "$t" ] && [ "$st" != Z ] && roots="$roots $p"
done 2>/dev/null <"$1"
[ -n "$roots" ] || exit 0
alone=; others=
for o in $roots; do kids_of "$o"; for x in $ks; do kids_of "$x"; for y in $ks; do
  [ "$(cat "/proc/$y/comm" 2>/dev/null)" = cat ] && continue
  stat_of "$y" || continue
  if finishes "$y" "$x"; then alone="$alone $y:$t0"; printf 'waiting\t%s\t%s\n' "$y" "$(what_of "$y")"
  else others="$others $y"; fi
done; done; done
n=0; while :; do left=
  for e in $alone; do same "$e" && [ "$st" != Z ] && left="$left $e"; done
  [ -z "$left" ] && break
  if [ $n -ge $(($2 * 10)) ]; then for e in $left; do printf 'running\t%s\t%s\n' "${e%%:*}" "$2"; done; exit 3; fi
  sleep 0.1; n=$((n+1))
done
for e in $alone; do printf 'waited\t%s\t%s\n' "${e%%:*}" "$((n / 10))"; done
for y in $others; do stat_of "$y" && printf 'ended\t%s\n' "$(what_of "$y")"; done
end_trees $roots
