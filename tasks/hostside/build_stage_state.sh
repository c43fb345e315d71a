# shellcheck shell=sh
# steps/build.py STAGE_STATE: what is_built looks at, "key value" lines (tests/facts/stage_state). Its
# arguments are documented there.
rel=$1; ready=$2; marker=$3; d=$4; st=$5; pub=$6; link=$7; size=$8; shift 8
[ -f "$ready" ] || exit 0
echo ready
built=; { IFS= read -r built < "$marker"; } 2>/dev/null; echo "built $built"
tok=; inputs=; { read -r tok inputs < "$d/$st.built"; } 2>/dev/null
case $tok in *[!0-9a-f]*) tok=;; esac; [ ${#tok} -eq 12 ] || tok=
echo "record $tok $inputs"
envf=$d/$st.$tok.env; [ -n "$tok" ] || envf=$d/.none
if [ ! -e "$d/$st.env" ]; then echo "env_live -"; elif [ "$envf" -ef "$d/$st.env" ]; then echo "env_live 1"
else echo "env_live 0"; fi
nl='
'
mode=; fsize=; pubt=; both=
if [ -e "$envf" ] && [ -L "$pub" ]; then
  if [ -L "$link" ]; then
    both=$(QUOTING_STYLE=literal stat -c '%a %s %N' -- "$envf" "$pub" "$link" 2>/dev/null) || both=
  else
    both=$(QUOTING_STYLE=literal stat -c '%a %s %N' -- "$envf" "$pub" 2>/dev/null) || both=
  fi
  mode=${both%% *}; r=${both#* }; fsize=${r%% *}; rest=${r#"$fsize $envf$nl"}
  case $mode$fsize in ''|*[!0-9]*) both=;; esac
  [ "$rest" != "$r" ] || both=
  lt=
  if [ -n "$both" ] && [ -L "$link" ]; then   # two lines left: neither target has a newline
    case $rest in *"$nl"*"$nl"*) both=;; *"$nl"*) lt=${rest#*"$nl"}; rest=${rest%%"$nl"*};; *) both=;; esac
    r=${lt#* }; r=${r#* }; lt=${r#"$link -> "}; [ "$lt" != "$r" ] || both=
  fi
  r=${rest#* }; r=${r#* }; pubt=${r#"$pub -> "}
  [ "$pubt" != "$r" ] || both=
fi
if [ -z "$both" ]; then
  mode=$(stat -c %a -- "$envf" 2>/dev/null); fsize=
  pubt=; [ -L "$pub" ] && pubt=$(readlink -- "$pub")
fi
echo "env_mode $mode"
same=
if [ -n "$size" ] && [ "$fsize" = "$size" ] && [ -f "$envf" ]; then
  want=; l=; while IFS= read -r l; do want="$want$l$nl"; done; want=$want$l
  have=; l=; { while IFS= read -r l; do have="$have$l$nl"; done; have=$have$l; } < "$envf" 2>/dev/null
  [ "$have" = "$want" ] && same=1
fi
if [ -n "$same" ]; then echo "env_same 1"
else sum=; [ -e "$envf" ] && sum=$({ sha256sum < "$envf"; } 2>/dev/null); echo "env_sha256 ${sum%% *}"; fi
echo "published $pubt"
if [ -n "$both" ]; then echo "link $lt"; fi
for p in "$@"; do [ -L "$rel/$p" ] && [ -e "$rel/$p" ] || echo "missing $p"; done
