# shellcheck shell=sh
# steps/environment.py WRITE_ENV: a release's env file for a stage; part of build_stage_files.sh (reads its
# $live, sets $ver for it). Its arguments are documented there.
# SC2154: live is set by build_stage_files.sh, before this part
# SC2034: ver is read by build_stage_files.sh, after it
# shellcheck disable=SC2154,SC2034
d=$1; st=$2; how=$3; tok=$4; keep_tok=$5; pub=$6; target=$7; legacy=$8; made=$9; shift 9
cur=$d/$st.env; rec=$d/$st.built
if [ -d "$d" ]; then [ -n "$made" ] || chmod 700 "$d"; else (umask 077; mkdir -p "$d"); fi
for x in "$d/.$st".*.tmp; do if [ -e "$x" ]; then rm -f -- "$x"; fi; done   # a killed build's
if [ -f "$pub" ] && [ ! -L "$pub" ] && [ -d "${legacy%/*/*}" ] && [ ! -e "$legacy" ]; then
  (umask 077; mkdir -p "${legacy%/*}"; cp -- "$pub" "$legacy.tmp"; mv -f -- "$legacy.tmp" "$legacy")
fi
curv=
if [ -e "$cur" ]; then
  for f in "$d/$st".*.env; do
    v=${f#"$d/$st."}; v=${v%.env}
    case $v in *[!0-9a-f]*) continue;; esac
    if [ ${#v} -eq 12 ] && [ "$f" -ef "$cur" ]; then curv=$v; break; fi
  done
  if [ -z "$curv" ]; then ln -- "$cur" "$d/$st.$keep_tok.env"; curv=$keep_tok; fi
fi
old=; { read -r old x < "$rec"; } 2>/dev/null || true
case $old in *[!0-9a-f]*) old=;; esac; [ ${#old} -eq 12 ] && [ -f "$d/$st.$old.env" ] || old=
ver=
if [ "$how" = keep ] && [ -n "$curv" ]; then cat > /dev/null; ver=$curv
else
  new=$d/.$st.$tok.tmp
  if [ -e "$new" ] || [ -L "$new" ]; then rm -f -- "$new"; fi
  if [ "$how" = r ]; then
    (umask 077; c=; l=; while IFS= read -r l; do c="$c$l
"; done; printf '%s' "$c$l" > "$new")
  else
    (umask 077; cat > "$new")
  fi
  if [ -n "$old" ] && cmp -s -- "$new" "$d/$st.$old.env"; then ver=$old
  elif [ -n "$curv" ] && cmp -s -- "$new" "$cur"; then ver=$curv
  else mv -f -- "$new" "$d/$st.$tok.env"; ver=$tok
  fi
  rm -f -- "$new"
fi
[ -e "$cur" ] || [ -n "$live" ] || ln -- "$d/$st.$ver.env" "$cur"
if [ ! -L "$pub" ] || [ "$(readlink -- "$pub")" != "$target" ]; then
  [ -d "${pub%/*}" ] || mkdir -p "${pub%/*}"
  if [ -e "$pub" ] || [ -L "$pub" ] || ! ln -s -- "$target" "$pub" 2>/dev/null; then
    if [ -e "$pub.tmp" ] || [ -L "$pub.tmp" ]; then rm -f -- "$pub.tmp"; fi
    ln -s -- "$target" "$pub.tmp"; mv -fT -- "$pub.tmp" "$pub"
  fi
fi
