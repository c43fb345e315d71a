"""The facts of a host that the built-in checks (infra-tests/test_stage.py) look at: what the stage's link,
the release, its env files and the shared dirs resolve to, with their modes and owners, read by ONE
command (FACTS) whose "key=value" lines parse_facts reads."""
from __future__ import annotations

import json
import re
import shlex

from ..config import Config, Stage
from ..layout import Layout

# What the built-in checks read of a host, by ONE command. $1 link, $2 release dir, $3 shared/<stage>.env,
# $4 the release's ready marker, $5 its release json, $6 its own env file for the stage, then the shared
# dirs: one "key=value" a line. One program (stat) runs in the common case, two (realpath, stat) in
# others with every path there; the checks compare what realpath says of each path, and each answer is
# that, from realpath or from the kernel's own resolution (cd -P), never a guess from a link's text alone.
FACTS = r'''link=$1; rel=$2; env=$3; ready=$4; meta=$5; own=$6; shift 6
flag() { k=$1; shift; if test "$@"; then echo "$k=1"; else echo "$k=0"; fi; }
nl='
'
# paths N TEXT: TEXT is N lines, each an absolute path (what realpath answers for N paths that resolve)
paths() { local t n; t=$2; n=0
  while :; do case $t in /*) ;; *) return 1;; esac; n=$((n + 1))
    case $t in *"$nl"*) t=${t#*"$nl"};; *) break;; esac; done; [ "$n" = "$1" ]; }
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
'''


def facts_argv(layout: Layout, config: Config, stage: Stage, release: str) -> list[str]:
    return ["sh", "-c", FACTS, "sh", layout.link(stage.link), layout.release(release), layout.env_file(stage.name),
            layout.ready(release), layout.release_meta(release), layout.release_env(release, stage.name),
            *config.project.shared_dirs]


def parse_facts(text: str) -> dict[str, str]:
    """FACTS' output -> {key: value}."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def facts_command(layout: Layout, config: Config, stage: Stage, release: str) -> str:
    """The facts script as the built-in checks send it (host.check_output)."""
    return shlex.join(facts_argv(layout, config, stage, release))


# -- the interpreter a host builds release venvs with (build = pip | buildout) -----------------------------
# `python3` as the login's PATH finds it: the one UNPACK runs `python3 -m venv` with. It prints PEP 508's
# marker environment (what packaging's default_environment() says, computed the same way) plus the C
# library, as one JSON line: what the wheelhouse is resolved and keyed for. -I -S: no site, no user paths.
INTERPRETER = r'''import json, os, platform, sys
i = sys.implementation; v = i.version
iv = "%d.%d.%d" % (v.major, v.minor, v.micro)
if v.releaselevel != "final":
    iv += v.releaselevel[0] + str(v.serial)
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
except (ValueError, OSError, AttributeError):
    libc = ""
print(json.dumps({"implementation_name": i.name, "implementation_version": iv, "os_name": os.name,
    "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": "%d.%d" % sys.version_info[:2], "sys_platform": sys.platform, "libc": libc},
    sort_keys=True))'''
MARKER_KEYS = ("implementation_name", "implementation_version", "os_name", "platform_machine", "platform_release",
               "platform_system", "platform_version", "python_full_version", "platform_python_implementation",
               "python_version", "sys_platform")


def interpreter_argv() -> list[str]:
    return ["python3", "-I", "-S", "-c", INTERPRETER]


def parse_interpreter(text: str) -> dict[str, str] | None:
    """INTERPRETER's output -> its marker environment (every value a string), or None when it is not that."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        env = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if not isinstance(env, dict) or any(not isinstance(env.get(k), str) for k in (*MARKER_KEYS, "libc")):
        return None
    return {k: env[k] for k in (*MARKER_KEYS, "libc")}


def interpreter_key(env: dict[str, str]) -> str:
    """What a wheelhouse is built for, in a file name: cpython-3.11.2-linux-x86_64."""
    raw = f"{env['implementation_name']}-{env['python_full_version']}-{env['sys_platform']}-{env['platform_machine']}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


# The same key, printed by the host's python3 itself (build.UNPACK checks it before it makes a venv).
KEY_CODE = ('import platform, re, sys; print(re.sub(r"[^A-Za-z0-9._-]", "_", "%s-%s-%s-%s" % (sys.implementation.name, '
            'platform.python_version(), sys.platform, platform.machine())))')


def interpreter_text(env: dict[str, str]) -> str:
    """For people: CPython 3.11.2 (linux x86_64)."""
    return f"{env['platform_python_implementation']} {env['python_full_version']} " \
           f"({env['sys_platform']} {env['platform_machine']})"
