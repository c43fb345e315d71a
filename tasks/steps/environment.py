"""What the app sees: the env files of (stage, release) and the wrapper every app command runs through.

The environment travels with the release, in versions that are never rewritten: the stage's build writes
releases/<id>/.deploy-env/<stage>.<token>.env (0600, in a 0700 dir) when the environment it wants is not one
the release has, and records it in <stage>.built; <stage>.env, a hard link to one version, is what the
release runs with on the stage. The build makes it only for a release that has none (a fresh one, never
live there); otherwise only the switch moves it, by rename, with the link (steps/switch.py): a changed
environment goes live by the switch and goes back with it, and a refused or failed run leaves every live
env file byte for byte as it was. shared/<stage>.env (the path an app server loads) is a symlink through the
stage's link to <stage>.env, so it switches with the link. The password and the values of [secrets]
travel only inside these files (the password URL-encoded in DATABASE_URL), on the stdin of the command that
writes one, never on a command line; the build compares them on the host, through stdin too (build.py
STAGE_STATE), so no digest of them is kept anywhere.
"""
from __future__ import annotations

import posixpath
import secrets
import shlex

from ..config import Config, Stage
from ..engines import engine_for
from ..hostside import script
from ..layout import Layout

# $1 the release's env file for the stage (<stage>.env: what it runs with there), $2 the release,
# $3 shared/<stage>.env, $4 the release's env record for the stage, or "" for the live env: with a record,
# the version the stage's last build of the release made (a migration or build_command before the switch
# sees the env that the switch makes live). Loads the env file, enters the release, puts its venv first on
# PATH, then runs the argv given after them. A release deployed before env files lived in releases has
# none; while shared/<stage>.env is still the plain file of that time (its stage was not built since),
# that file is the env of the release live on the stage, and is used instead.
APP_WRAPPER = ('e=$1; if [ -n "$4" ]; then v=; { read -r v x < "$4"; } 2>/dev/null; case $v in *[!0-9a-f]*) v=;; esac; '
               'if [ ${#v} -eq 12 ] && [ -e "${4%.built}.$v.env" ]; then e=${4%.built}.$v.env; fi; fi; '
               'if [ ! -e "$e" ] && [ -f "$3" ] && [ ! -L "$3" ]; then e=$3; fi; '
               'set -a; . "$e" || exit 97; set +a; cd "$2" || exit 97; '
               'if [ -d .venv/bin ]; then PATH="$2/.venv/bin:$PATH"; export PATH; fi; shift 4; exec "$@"')


# stdin: the env file. $1 the release's env dir, $2 the stage, $3 "keep" to keep the env the release runs
# with on the stage if it has one (a rollback), "r" to write stdin read by the shell itself (a short text: no
# cat runs), "" to write it by cat, $4 the token of a new version, $5 the token under which an env file of
# the release that no version names yet (written before versions) is kept, $6 shared/<stage>.env, $7 its
# target (through the stage's link), $8 the env file of the release live now (through the link), $9 "1"
# when the release's env dir was just made 0700 (no chmod then); then shift 9, so that build.py's stage
# script goes on with its own arguments. Reads $live ("1": this release is live on the stage on this host).
# Sets $ver: the version the build made or found (an identical one is reused: the last build's, or the one
# live), never rewriting a file. A release without <stage>.env (never live on the stage) gets it here, a
# hard link to $ver; any other's is moved only by the switch.
# A host from before per-release env files has a plain shared/<stage>.env: the env of the release live
# now, so it is moved into that release before the symlink replaces it. A shared/<stage>.env that is not
# there yet is made by one symlink(2) (nothing to replace: no temporary link, no rename).
WRITE_ENV = script("env_write.sh")
TEXT_MAX = 4096   # an env file up to this size, without NUL, is read by the shell's read (a byte a syscall)


def write_env_args(layout: Layout, stage: Stage, rid: str, keep: bool, tokens: tuple[str, str],
                   env: bytes | None = None, dir_made: bool = False) -> list[str]:
    """WRITE_ENV's nine arguments (the env itself, `env`, goes through stdin: env_file()). tokens: the
    names of a new version and of an older env file kept as one (env_token()). dir_made: the release's env
    dir was just made 0700 (build.UNPACK said so)."""
    text = env is not None and len(env) <= TEXT_MAX and b"\0" not in env
    how = "keep" if keep else ("r" if text else "")
    return [posixpath.dirname(layout.release_env(rid, stage.name)), stage.name, how, *tokens,
            layout.env_file(stage.name), layout.env_file_target(stage.link, stage.name),
            layout.live_env(stage.link, stage.name), "1" if dir_made else ""]


def env_token() -> str:
    """A new env version's name (random: a digest of the file would tell about the secrets in it)."""
    return secrets.token_hex(6)


def env_values(layout: Layout, config: Config, stage: Stage, rid: str) -> dict[str, str]:
    """What the env file of release `rid` on the stage sets, by name (STAGE_DIR: the release's own
    generation of the stage dirs, layout.stage_dir)."""
    env = {"STAGE": stage.name, "STAGE_DIR": layout.stage_dir(stage.name, rid)}
    if stage.settings:
        env["DJANGO_SETTINGS_MODULE"] = stage.settings
    db = config.stage_database(stage)
    if db:
        env.update(engine_for(db).app_env(db))   # DATABASE_URL, and what the engine's app needs beside it
    # then the app's own: [env] and its [secrets] (their names never the tool's: refused at load); a secret
    # is read once per run, before any host is touched (config.appenv.read_secrets)
    env.update(stage.env)
    env.update(config.secret_values(stage))
    return env


def env_file(layout: Layout, config: Config, stage: Stage, rid: str) -> bytes:
    """KEY='value' lines: loadable by sh (set -a; .), systemd's EnvironmentFile and python-dotenv."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in env_values(layout, config, stage, rid).items()).encode()


def app_command(layout: Layout, stage: str, release: str, argv: list[str], live: bool = False) -> list[str]:
    """argv run in the release with the release's own env for the stage (never another release's): by
    default the version its last build for the stage made (a build_command or migration before the switch
    sees the env that goes live); live=True, the one it runs with there (a reload after a switch or a
    put-back, verify)."""
    return ["sh", "-c", APP_WRAPPER, "sh", layout.release_env(release, stage), layout.release(release),
            layout.env_file(stage), "" if live else layout.env_record(release, stage), *argv]
