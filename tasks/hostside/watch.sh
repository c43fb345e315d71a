# shellcheck shell=sh
# watchdog.py WATCH (after watch_lib.sh): `sh -c WATCH dst-watch [ARGV...]`, around every session; no comment
# below the header: watchdog.py joins its lines into one (WATCH_LINE). Its arguments are documented there.
# SC3043: `local` (tasks/hostside/__init__.py)
# SC2086: pid lists are split on purpose
# SC2154: st, t0, ks are set by watch_lib.sh's functions, which come first
# SC1091: `. /dev/stdin` runs the session's commands (where it is unreadable, `exec sh` does, told the session's
# ident by its environment: the lock's take records it)
# done_ ends the relay with SIGPIPE, not SIGTERM: sh reports a job ended by any other signal ("Terminated")
# on stderr, which over ssh is the command's own stderr (run:<stage> printed "[host] Terminated" after every command)
# shellcheck disable=SC3043,SC2086,SC2154,SC1091
lost() { local me s c; { read -r me </proc/self/stat; } 2>/dev/null; set -- $me
  [ "$4" = "$$" ] || return 0; me=$1; kids_of $$
  for s in $ks; do [ "$s" != "$me" ] && break; s=; done; [ -n "$s" ] || return 0
  kids_of "$s"; for c in $ks; do finishes "$c" "$s" || end_trees "$c"; done; }
done_() { local me k; { read -r me </proc/self/stat; } 2>/dev/null; me=${me%% *}
  kids_of $$; for k in $ks; do [ "$k" = "$me" ] || kill -PIPE "$k" 2>/dev/null; done; exit "$1"; }
stat_of $$; boot=; { read -r boot </proc/sys/kernel/random/boot_id; } 2>/dev/null
printf 'dst-watch %s %s %s\n' "$$" "$t0" "$boot" >&2
relay() { cat <&3 3<&-; exec 3<&- >&-; lost; }
run() { exec 3<&-; [ $# -gt 0 ] || { __dst_me=; [ -z "$t0" ] || [ -z "$boot" ] || __dst_me="$$ $t0 $boot"
  [ -r /dev/stdin ] || { export __dst_me; exec sh; }
  unset -f stat_of kids_of freeze moving same signal_all any_alive end_trees hup_ignored finishes lost done_ relay
  unset st t0 boot; . /dev/stdin; exit; }; "$@"; done_ $?; }
exec 3<&0
relay </dev/null 2>/dev/null | run "$@" & wait $!
