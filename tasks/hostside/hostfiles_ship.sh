# shellcheck shell=sh
# steps/hostfiles.py SHIP: the hostside programs' directory, written whole. Its arguments are documented
# there.
d=$1; [ -f "$d/complete" ] && exit 0
t=$d.tmp.$2; rm -rf -- "$t"; (umask 022; mkdir -p -- "$t") || exit
shift 2; while [ $# -gt 1 ]; do printf '%s' "$2" > "$t/$1" || { rm -rf -- "$t"; exit 1; }; shift 2; done
: > "$t/complete"
if [ -e "$d" ]; then rm -rf -- "$d"; fi
mv -T -- "$t" "$d" 2>/dev/null || { rm -rf -- "$t"; [ -f "$d/complete" ]; }
