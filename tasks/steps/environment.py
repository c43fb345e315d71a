"""What the app sees: the env file of (stage, release) and the wrapper every app command runs through.

The env file lives in the release (releases/<id>/.deploy-env/<stage>.env, mode 0600 in a 0700 dir), so the
environment travels with the release: a promotion that fails and puts every host back, or a rollback,
returns each host to the old release AND the environment it ran with, byte for byte. shared/<stage>.env
(the path an app server loads) is a symlink through the stage's link to it, so it switches with the link.
The password travels only inside that file (URL-encoded in DATABASE_URL), never on a command line.
"""
from __future__ import annotations

import shlex
from urllib.parse import quote

from ..config import Config, Database, Stage
from ..layout import Layout

# $1 the release's env file, $2 the release, $3 shared/<stage>.env: loads the env file, enters the release,
# puts its venv first on PATH, then runs the argv given after them. A release deployed before env files
# lived in releases has none; while shared/<stage>.env is still the plain file of that time (its stage
# was not built since), that file is the env of the release live on the stage, and is used instead.
APP_WRAPPER = ('e=$1; if [ ! -e "$e" ] && [ -f "$3" ] && [ ! -L "$3" ]; then e=$3; fi; '
               'set -a; . "$e" || exit 97; set +a; cd "$2" || exit 97; '
               'if [ -d .venv/bin ]; then PATH="$2/.venv/bin:$PATH"; export PATH; fi; shift 3; exec "$@"')


def database_url(db: Database) -> str:
    if db.engine == "sqlite":
        return "sqlite:///" + quote(db.path, safe="/")  # absolute: sqlite:////srv/x.sqlite3
    cred = quote(db.user, safe="")
    if db.password_env:
        cred += ":" + quote(db.password(), safe="")
    return f"mysql://{cred}@{db.host}:{db.port}/{quote(db.dbname, safe='')}"


# stdin: the env file. $1 the release's env file, $2 "1" to keep one the release already has (a rollback),
# "r" to write it from stdin read by the shell itself (a short text: no cat runs), "" to write it by cat,
# $3 shared/<stage>.env, $4 its target (through the stage's link), $5 the env file of the release live now
# (through the link), $6 "1" when the release's env dir was just made 0700 (no chmod then); then shift 6,
# so that build.py's stage script goes on with its own arguments.
# A host from before per-release env files has a plain shared/<stage>.env: the env of the release live
# now, so it is moved into that release before the symlink replaces it. A shared/<stage>.env that is not
# there yet is made by one symlink(2) (nothing to replace: no temporary link, no rename).
WRITE_ENV = r'''envf=$1; keep=$2; pub=$3; target=$4; live=$5; made=$6; shift 6
if [ -d "${envf%/*}" ]; then [ -n "$made" ] || chmod 700 "${envf%/*}"; else (umask 077; mkdir -p "${envf%/*}"); fi
if [ -f "$pub" ] && [ ! -L "$pub" ] && [ -d "${live%/*/*}" ] && [ ! -e "$live" ]; then
  (umask 077; mkdir -p "${live%/*}"; cp -- "$pub" "$live.tmp"; mv -f -- "$live.tmp" "$live")
fi
if [ "$keep" = 1 ] && [ -f "$envf" ]; then cat > /dev/null
else
  if [ -e "$envf.tmp" ] || [ -L "$envf.tmp" ]; then rm -f -- "$envf.tmp"; fi
  if [ "$keep" = r ]; then
    (umask 077; c=; l=; while IFS= read -r l; do c="$c$l
"; done; printf '%s' "$c$l" > "$envf.tmp")
  else
    (umask 077; cat > "$envf.tmp")
  fi
  mv -f "$envf.tmp" "$envf"
fi
if [ ! -L "$pub" ] || [ "$(readlink -- "$pub")" != "$target" ]; then
  [ -d "${pub%/*}" ] || mkdir -p "${pub%/*}"
  if [ -e "$pub" ] || [ -L "$pub" ] || ! ln -s -- "$target" "$pub" 2>/dev/null; then
    if [ -e "$pub.tmp" ] || [ -L "$pub.tmp" ]; then rm -f -- "$pub.tmp"; fi
    ln -s -- "$target" "$pub.tmp"; mv -fT -- "$pub.tmp" "$pub"
  fi
fi
'''
TEXT_MAX = 4096   # an env file up to this size, without NUL, is read by the shell's read (a byte a syscall)


def write_env_args(layout: Layout, stage: Stage, rid: str, keep: bool, env: bytes | None = None,
                   dir_made: bool = False) -> list[str]:
    """WRITE_ENV's six arguments (the env itself, `env`, goes through stdin: env_file()). dir_made: the
    release's env dir was just made 0700 (build.UNPACK said so)."""
    text = env is not None and len(env) <= TEXT_MAX and b"\0" not in env
    how = "1" if keep else ("r" if text else "")
    return [layout.release_env(rid, stage.name), how, layout.env_file(stage.name),
            layout.env_file_target(stage.link, stage.name), layout.live_env(stage.link, stage.name),
            "1" if dir_made else ""]


def env_values(layout: Layout, config: Config, stage: Stage) -> dict[str, str]:
    """What the stage's env file sets, by name."""
    env = {"STAGE": stage.name, "STAGE_DIR": layout.stage_dir(stage.name)}
    if stage.settings:
        env["DJANGO_SETTINGS_MODULE"] = stage.settings
    db = config.stage_database(stage)
    if db:
        env["DATABASE_URL"] = database_url(db)
        if db.option_file:
            env["DATABASE_OPTION_FILE"] = db.option_file
    return env


def env_file(layout: Layout, config: Config, stage: Stage) -> bytes:
    """KEY='value' lines: loadable by sh (set -a; .), systemd's EnvironmentFile and python-dotenv."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in env_values(layout, config, stage).items()).encode()


def app_command(layout: Layout, stage: str, release: str, argv: list[str]) -> list[str]:
    """argv run in the release with the release's own env for the stage (never the live one's: a migration
    before the switch sees the new env, a reload after a put-back the old one)."""
    return ["sh", "-c", APP_WRAPPER, "sh", layout.release_env(release, stage), layout.release(release),
            layout.env_file(stage), *argv]
