"""What the app sees: shared/<stage>.env (mode 0600) and the wrapper every app command runs through.

The password travels only inside that file (URL-encoded in DATABASE_URL), never on a command line.
"""
from __future__ import annotations

import shlex
from urllib.parse import quote

from ..config import Config, Database, Stage
from ..layout import Layout

# Loads the env file, enters the release, puts its venv first on PATH, then runs the argv given after it.
APP_WRAPPER = ('set -a; . "$1" || exit 97; set +a; cd "$2" || exit 97; '
               'if [ -d .venv/bin ]; then PATH="$2/.venv/bin:$PATH"; export PATH; fi; shift 2; exec "$@"')


def database_url(db: Database) -> str:
    if db.engine == "sqlite":
        return "sqlite:///" + quote(db.path, safe="/")  # absolute: sqlite:////srv/x.sqlite3
    cred = quote(db.user, safe="")
    if db.password_env:
        cred += ":" + quote(db.password(), safe="")
    return f"mysql://{cred}@{db.host}:{db.port}/{quote(db.dbname, safe='')}"


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
    return ["sh", "-c", APP_WRAPPER, "sh", layout.env_file(stage), layout.release(release), *argv]
