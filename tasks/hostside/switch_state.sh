# shellcheck shell=sh
# steps/switch_state.py STATE: a stage's link, the release's readiness and the intent
# (tests/facts/switch_state). Its arguments are documented there.
root=$1; intent=$3; l=$1/$2; p=$1; t=
set -f; IFS=/; for c in ${2%/*}; do p=$p/$c; if [ -L "$p" ]; then
  unset IFS; echo "unsafe ${p#"$root/"} $(readlink -- "$p")"; break; fi; done; unset IFS; set +f
case $4 in =*) t=${4#=};; -) ;; *) [ -L "$l" ] && t=$(readlink -- "$l");; esac
echo "link $t"
if [ -e "$l" ] && [ ! -L "$l" ]; then echo notlink; fi
if [ $# -gt 4 ]; then
  rel=$5; ready=$6; marker=$7; d=$8; st=$9; shift 9
  [ -f "$ready" ] && echo "ready 1" || echo "ready 0"
  built=; { IFS= read -r built < "$marker"; } 2>/dev/null; echo "built $built"
  v=; { read -r v _ < "$d/$st.built"; } 2>/dev/null; case $v in *[!0-9a-f]*) v=;; esac
  [ ${#v} -eq 12 ] && [ -f "$d/$st.$v.env" ] || v=
  cur=
  if [ -e "$d/$st.env" ]; then cur='?'
    for f in "$d/$st".*.env; do w=${f#"$d/$st."}; w=${w%.env}; case $w in *[!0-9a-f]*) continue;; esac
      if [ ${#w} -eq 12 ] && [ "$f" -ef "$d/$st.env" ]; then cur=$w; break; fi; done
  fi
  echo "env $v $cur"
  for p in "$@"; do [ -L "$rel/$p" ] && [ -e "$rel/$p" ] || echo "missing $p"; done
fi
echo "--intent--"; if [ -e "$intent" ]; then cat -- "$intent" 2>/dev/null; fi; true
