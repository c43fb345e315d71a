# shellcheck shell=sh
# steps/build.py STAGE_FILES: a stage's build after the unpack; the line @WRITE_ENV@ is replaced by
# env_write.sh before it is sent. Its arguments are documented there.
# SC2154: ver is set by env_write.sh, in @WRITE_ENV@'s place
# shellcheck disable=SC2154
set -e
rel=$1; link=$2; want=$3; inputs=$4; more=$5; rec=$6; n=$7; shift 7
live=; if [ -L "$link" ] && [ "$(readlink -- "$link")" = "$want" ]; then live=1; fi
if [ -n "$live" ]; then
  was=; { read -r _ was < "$rec"; } 2>/dev/null || true
  if [ -n "$was" ] && [ "$was" != - ] && [ "$was" != "$inputs" ]; then echo "live, built with $was"; exit 4; fi
  more=
fi
while [ "$n" -gt 0 ]; do
  kind=$1; path=$2; target=$3; shared=$4; shift 4; n=$((n - 1))
  if [ "$kind" = d ]; then [ -d "$shared" ] || mkdir -p -- "$shared"
  elif [ ! -e "$shared" ]; then echo "shared file $shared is missing; create it on this host" >&2; exit 3; fi
  if [ -L "$rel/$path" ] && [ "$(readlink -- "$rel/$path")" = "$target" ]; then continue; fi
  if [ -e "$rel/$path" ] || [ -L "$rel/$path" ]; then rm -rf -- "${rel:?}/$path"; fi
  case $path in */*) d=$rel/${path%/*};; *) d=$rel;; esac
  [ -d "$d" ] || mkdir -p -- "$d"
  ln -s -- "$target" "$rel/$path"
done
@WRITE_ENV@
fresh=$1; marker=$2; rid=$3; shift 3
[ -z "$live" ] || fresh=
if [ $# -gt 0 ]; then
  if [ -n "$fresh" ]; then rm -rf -- "$@"; fi
  mkdir -p -- "$@"
fi
(umask 077; printf '%s %s\n' "$ver" "${more:+-}${more:-$inputs}" > "$rec.tmp"); mv -f -- "$rec.tmp" "$rec"
echo "env $ver"
if [ -n "$live" ]; then echo live; fi
[ -z "$more" ] || exit 0
[ -d "${marker%/*}" ] || (umask 077; mkdir -p -- "${marker%/*}")
if [ -e "$marker.tmp" ] || [ -L "$marker.tmp" ]; then rm -f -- "$marker.tmp"; fi
(umask 133; printf '%s\n' "$rid" > "$marker.tmp")
mv -f -- "$marker.tmp" "$marker"
