# shellcheck shell=sh
# steps/facts.py FACTS: what the built-in checks read of a host, "key=value" lines (tests/facts/facts).
# Its arguments are documented there.
link=$1; rel=$2; env=$3; ready=$4; meta=$5; own=$6; shift 6
flag() { k=$1; shift; if test "$@"; then echo "$k=1"; else echo "$k=0"; fi; }
nl='
'
# paths N TEXT: TEXT is N lines, each an absolute path (what realpath answers for N paths that resolve)
paths() { pt=$2; pn=0
  while :; do case $pt in /*) ;; *) return 1;; esac; pn=$((pn + 1))
    case $pt in *"$nl"*) pt=${pt#*"$nl"};; *) break;; esac; done; [ "$pn" = "$1" ]; }
# next_: the first line of $rest in $got, taken off $rest
next_() { got=${rest%%"$nl"*}; case $rest in *"$nl"*) rest=${rest#*"$nl"};; *) rest=;; esac; }
# The common case by ONE program: when the env link leads to the release's own env file, a stat of that
# file, its directory, /proc/self/ (the user stat runs as: what id -un says) and the link (its target,
# %N literal) answers every mode and owner, and the shell's own `cd -P` + `pwd -P` (the physical path,
# what realpath says of a directory) resolves the rest; each answer is checked for its expected form,
# and anything else goes on to the general case below.
fast=1
for p in "$link" "$rel" "$env" "$own"; do case $p in /*) [ -e "$p" ] || fast=;; *) fast=;; esac; done
if [ -n "$fast" ] && [ -L "$env" ] && [ ! -L "$own" ]; then
  rest=$(QUOTING_STYLE=literal stat -c '%a %U %N' -- "$own" "${own%/*}" /proc/self/ "$env" 2>/dev/null) || fast=
  for want in "$own" "${own%/*}" /proc/self/ "$env -> "; do
    next_; m=${got%% *}; r=${got#* }; u=${r%% *}; n=${r#* }
    case $m in ''|*[!0-7]*) fast=;; esac
    case $n in "$want"*) ;; *) fast=;; esac
    case $want in "$own") mo="$m $u";; "${own%/*}") dm=$m;; /proc/self/) me=$u;; *) t=${n#"$want"};; esac
    [ "$n" = "$want" ] || [ "$want" = "$env -> " ] || fast=
  done
  [ -z "$rest" ] && [ -n "$t" ] || fast=
  case $me in ''|UNKNOWN) fast=;; esac
fi
if [ -n "$fast" ]; then
  case $t in /*) p=$t;; *) p=${env%/*}/$t;; esac
  b=${p##*/}; d=${p%/*}; [ -n "$d" ] || d=/
  case $b in ''|.|..) fast=;; esac
  pd=$(cd -P -- "$d" 2>/dev/null && pwd -P) || fast=
  et=${pd%/}/$b
  pd=$(cd -P -- "${own%/*}" 2>/dev/null && pwd -P) || fast=
  eo=${pd%/}/${own##*/}
  [ "$et" = "$eo" ] && [ -e "$eo" ] && [ ! -L "$eo" ] || fast=
fi
if [ -n "$fast" ]; then
  flag link_is_symlink -L "$link"
  got=$(cd -P -- "$link" 2>/dev/null && pwd -P) || got=$(realpath -- "$link" 2>/dev/null)
  echo "link_target=$got"
  flag ready -e "$ready"
  r=; { IFS= read -r r < "$rel/REVISION"; } 2>/dev/null; echo "revision=$r"
  m=; { IFS= read -r m < "$meta"; } 2>/dev/null; echo "meta=$m"
  echo "env_mode=${mo%% *}"
  echo "env_owner=${mo#* } $me"
  echo "env_dir_mode=$dm"
  flag env_is_symlink -L "$env"
  echo "env_target=$et"
  echo "env_own=$eo"
  for name in "$@"; do
    if [ -L "$rel/$name" ]; then l=1; else l=0; fi
    case $name in /*) got=;; *) got=$(cd -P -- "$rel/$name" 2>/dev/null && pwd -P) || got=;; esac
    [ -n "$got" ] || got=$(realpath -- "$rel/$name" 2>/dev/null)
    echo "shared:$name=$l $got"
  done
  exit 0
fi
# Else, when every path is there: ONE realpath for all of them (the shared dirs from inside the release) and ONE
# stat for the env file's mode and owner, its directory's mode and the user stat runs as (its /proc/self:
# what id -un says). Otherwise, or when an answer is not what that takes, each is asked alone.
all=1
for p in "$link" "$rel" "$env" "$own"; do case $p in /*) [ -e "$p" ] || all=;; *) all=;; esac; done
for name in "$@"; do case $name in /*) all=;; *) [ -e "$rel/$name" ] || all=;; esac; done
rp=; st=; mo=; dm=; me=
if [ -n "$all" ]; then
  rp=$(cd -- "$rel" 2>/dev/null && realpath -e -- "$link" "$env" "$own" "$@" 2>/dev/null) &&
    paths $(($# + 3)) "$rp" || rp=
  if [ ! -L "${own%/*}" ]; then
    rest=$(stat -L -c '%a %U' -- "$env" "${own%/*}" /proc/self 2>/dev/null) || rest=
    next_; mo=$got; next_; dm=${got%% *}; next_; me=${got#* }
    case $me in ''|*' '*|UNKNOWN) st=;; *) [ -z "$rest" ] && st=1;; esac
  fi
fi
rest=$rp
flag link_is_symlink -L "$link"
if [ -n "$rp" ]; then next_; else got=$(realpath -- "$link" 2>/dev/null); fi
echo "link_target=$got"
flag ready -e "$ready"
r=; { IFS= read -r r < "$rel/REVISION"; } 2>/dev/null; echo "revision=$r"
m=; { IFS= read -r m < "$meta"; } 2>/dev/null; echo "meta=$m"
if [ -z "$st" ]; then
  mo=; [ -e "$env" ] && mo=$(stat -Lc '%a %U' -- "$env")
  me=$(id -un); dm=$(stat -c %a -- "${own%/*}" 2>/dev/null)
fi
echo "env_mode=${mo%% *}"
echo "env_owner=${mo#* } $me"
echo "env_dir_mode=$dm"
flag env_is_symlink -L "$env"
et=; eo=; both=
if [ -n "$rp" ]; then next_; et=$got; next_; eo=$got
else
  [ -e "$env" ] && [ -e "$own" ] && both=$(realpath -e -- "$env" "$own" 2>/dev/null)
  case $both in
    *"$nl"*) et=${both%%"$nl"*}; eo=${both#*"$nl"};;
    *) et=$(realpath -e -- "$env" 2>/dev/null); eo=$(realpath -e -- "$own" 2>/dev/null);;
  esac
fi
echo "env_target=$et"
echo "env_own=$eo"
for name in "$@"; do
  if [ -L "$rel/$name" ]; then l=1; else l=0; fi
  if [ -n "$rp" ]; then next_; else got=$(realpath -- "$rel/$name" 2>/dev/null); fi
  echo "shared:$name=$l $got"
done
