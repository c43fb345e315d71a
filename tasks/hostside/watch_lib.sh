# shellcheck shell=sh
# watchdog.py LIB: the shell functions WATCH (watch.sh), END (watch_end.sh) and the lock's PROBE
# (lock_probe.sh) start with; no comment below the header: watchdog.py joins its lines into one.
# SC3043: `local`, since freeze recurses (tasks/hostside/__init__.py: the shells a host may have)
# SC2086: pid lists and /proc's stat fields are split on purpose
# shellcheck disable=SC3043,SC2086
stat_of() { local l; l=; { read -r l <"/proc/$1/stat"; } 2>/dev/null; [ -n "$l" ] || return 1
  l=${l##*) }; set -- $l; st=$1; t0=${20}; }
kids_of() { local t c; ks=; for t in /proc/"$1"/task/*/children; do c=
  { read -r c <"$t"; } 2>/dev/null; ks="$ks $c"; done; }
freeze() { local p n c; for p; do stat_of "$p" || continue
  case " $all " in *" $p:$t0 "*) continue;; esac
  kill -STOP "$p" 2>/dev/null || continue; all="$all $p:$t0"
  n=0; while moving "$p" && [ $n -lt 3000 ]; do n=$((n+1)); done
  kids_of "$p"; c=$ks; freeze $c; done; }
moving() { stat_of "$1" && [ "$st" != T ] && [ "$st" != t ] && [ "$st" != Z ]; }
same() { stat_of "${1%%:*}" && [ "$t0" = "${1#*:}" ]; }
signal_all() { local e; for e in $all; do same "$e" && kill -"$1" "${e%%:*}" 2>/dev/null; done; return 0; }
any_alive() { local e; for e in $all; do same "$e" && [ "$st" != Z ] && return 0; done; return 1; }
end_trees() { local n; all=; freeze "$@"; [ -n "$all" ] || return 0; signal_all TERM; signal_all CONT
  n=0; while any_alive && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; signal_all KILL; }
hup_ignored() { local k v; v=
  { while read -r k v; do [ "$k" = SigIgn: ] && break; done <"/proc/$1/status"; } 2>/dev/null
  case $v in *[13579bdfBDF]) return 0;; esac; return 1; }
finishes() { hup_ignored "$1" && ! hup_ignored "$2"; }
