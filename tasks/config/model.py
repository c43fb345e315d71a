"""The loaded stages.ini: frozen dataclasses that every other module trusts (built only by load_config).

Project, Database and Stage hold one section each, Hook one hook key, Host one entry of `hosts` or
`backup_host`, S3Store the parsed `artifact_store = s3://...`, Config the whole file. No parsing of the file
here: see config.py.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

# S3 bucket names (the rules every S3-compatible store accepts) and keys' safe characters
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")


class ConfigError(Exception):
    """A mistake in stages.ini (or its environment) that the user can fix."""


def split_command(text: str) -> tuple[str, ...]:
    """A command key's value -> the argv it runs (shlex's POSIX rules; no shell parses it); () for "".
    Raises ValueError with the reason."""
    if any((ord(c) < 32 and c not in "\t\n") or ord(c) == 127 for c in text):
        raise ValueError("holds a control character (a NUL, a carriage return ...); remove it")
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"{text!r} cannot be split into arguments ({str(exc).lower()}); close the quote "
                         "(a ' ;' outside quotes starts a comment)") from None
    if argv and not argv[0]:
        raise ValueError(f"{text!r} names an empty program")
    return argv


def _set_argvs(obj, **commands: str) -> None:
    """The argv fields of a frozen dataclass, from its command texts (split once, when it is built)."""
    for name, text in commands.items():
        object.__setattr__(obj, name, split_command(text))


@dataclass(frozen=True)
class Hook:
    """One hook key (before_build, on_success, ...): a command run on every host of the stage, or, written
    with the `local:` prefix, once on the deploying machine (config/hooks.py; steps/hooks.py runs it)."""
    key: str
    command: str                 # as written, `local:` included
    local: bool
    argv: tuple[str, ...]        # the command without its prefix, split (shlex) at load
    role: str = ""               # `<key>.<role>`: that role's hosts only ("" the stage's other hosts); an empty
                                 # argv there: no hook for that role


@dataclass(frozen=True)
class Host:
    spec: str                # as written: 'local' or 'ssh://user@host:port'
    hostname: str = "local"
    user: str | None = None
    port: int | None = None

    @property
    def local(self) -> bool:
        return self.spec == "local"

    @property
    def address(self) -> str:
        """What {host} in health_url becomes when ssh names no other HostName (Transport.address)."""
        return "127.0.0.1" if self.local else self.hostname

    def __str__(self) -> str:
        return self.spec


@dataclass(frozen=True)
class S3Store:
    """artifact_store = s3://bucket/prefix: where the deployer puts an artifact once, for hosts to pull."""
    bucket: str
    prefix: str = ""           # without leading or trailing '/'
    endpoint: str = ""         # s3_endpoint: http(s)://host[:port] of a non-AWS store; "" for AWS
    region: str = ""           # s3_region; "" = boto3's own (AWS_REGION, ~/.aws/config), else us-east-1

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __str__(self) -> str:
        return self.url + (f" at {self.endpoint}" if self.endpoint else "")


def parse_store(text: str) -> tuple[str, str]:
    """'s3://bucket[/prefix]' -> (bucket, prefix); raises ValueError with the reason."""
    if not text.startswith("s3://"):
        raise ValueError(f"{text!r} is neither push nor s3://bucket/prefix")
    bucket, _, prefix = text[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not BUCKET_RE.match(bucket) or ".." in bucket or re.fullmatch(r"[\d.]+", bucket):
        raise ValueError(f"bucket {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    if not PREFIX_RE.match(prefix) or "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise ValueError(f"prefix {prefix!r} may hold only letters, digits, '/' and !_.*'()- (no '//', '.', '..')")
    return bucket, prefix


@dataclass(frozen=True)
class Database:
    name: str                # the section's name: [database:<name>]
    engine: str              # mysql | postgresql | sqlite
    dbname: str = ""
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = ""
    password_env: str = ""
    option_file: str = ""    # mysql: an option file on the hosts (~/ allowed)
    passfile: str = ""       # postgresql: libpq's password file on the hosts (~/ allowed), never read by the tool
    sslmode: str = ""        # postgresql: libpq's sslmode ("": libpq's default)
    path: str = ""           # sqlite: the file on the backup host
    backup_host: Host | None = None
    restore_on_failed_migration: bool = False
    # mysql, postgresql: how long the migration's session waits for a lock (metadata or row) before giving up, and how
    # many times the migration is tried again after that (steps/migration/migrate_bounded.py)
    migration_lock_timeout: int = 10
    migration_lock_retries: int = 3
    # The password, read from the environ given to load_config: never in a repr (doit and pytest print
    # them), never compared or hashed. doit's dep file stores only what actions return, never the config.
    secret: str = field(default="", repr=False, compare=False)
    # password_env's variable unset: the one-line error of a command that needs the password (status, list
    # and the commands that never log in to the database load without it; Config.require_passwords)
    missing_password: str = field(default="", repr=False, compare=False)

    def password(self) -> str:
        """The password of password_env as the environment given to load_config had it ("" with option_file
        or passfile); ConfigError when that variable was not set."""
        if self.missing_password:
            raise ConfigError(self.missing_password)
        return self.secret


@dataclass(frozen=True)
class Secret:
    """One key of [secrets] or [secrets:<stage>]: where the deploying machine reads its value (never the
    value itself: that is read once per run, by config.appenv.read_secrets, into Config.secret_values)."""
    name: str
    kind: str                 # env | file | command
    source: str               # the variable's name, the path as written, or the command as written
    where: str                # "stages.ini:12: [secrets] SECRET_KEY": how its errors start
    path: Path | None = None  # file: the path, ~ expanded, relative to stages.ini's directory
    argv: tuple[str, ...] = ()  # command: the argv (shlex)


@dataclass(frozen=True)
class Role:
    """One role of a stage (`hosts` is role "app", `hosts.<name>` the role <name>): its hosts and the per-role
    keys, each its own `KEY.<role>` where written, else the stage's KEY (build_command: None, the project's)."""
    name: str
    hosts: tuple[Host, ...]
    reload_command: str = ""
    health_url: str = ""
    batch: str = "100%"
    build_command: str | None = None
    reload_argv: tuple[str, ...] = field(init=False, repr=False)
    build_argv: tuple[str, ...] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _set_argvs(self, reload_argv=self.reload_command)
        object.__setattr__(self, "build_argv",
                           None if self.build_command is None else split_command(self.build_command))


APP_ROLE = "app"   # the role of the plain `hosts`


@dataclass(frozen=True)
class Stage:
    name: str
    hosts: tuple[Host, ...]
    link: str
    settings: str = ""
    database: str | None = None
    restore_from: str | None = None
    promote_from: str | None = None
    health_url: str = ""
    health_timeout: int = 30
    reload_command: str = ""
    reload_timeout: int = 60   # seconds reload_command may run on a host (steps/switch_back.py)
    batch: str = "100%"
    max_fail: int = 0
    buildout_config: str = "buildout.cfg"   # build = buildout: the config this stage's buildout runs
    health_headers: tuple[tuple[str, str], ...] = ()   # (name, value) pairs sent with the health check
    # [env] with [env:<stage>] over it: (name, literal value) in file order; [secrets] likewise, the sources
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[Secret, ...] = ()
    hooks: tuple[Hook, ...] = ()   # the stage's own, else the project's, key by key (config/hooks.py)
    console_command: str = "python manage.py shell"   # doit console:<stage> (operate.py)
    log_command: str = ""                              # doit logs:<stage>; none: logs refuses, naming the key
    # hosts in roles (hosts: every host, role "app"'s first; config/stage.py); () is one role "app" of all hosts
    roles: tuple[Role, ...] = ()
    primary: Host | None = None   # migrations and one-off commands run there; None: the first host
    # the command keys split (shlex), at load
    reload_argv: tuple[str, ...] = field(init=False, repr=False)
    console_argv: tuple[str, ...] = field(init=False, repr=False)
    log_argv: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _set_argvs(self, reload_argv=self.reload_command, console_argv=self.console_command,
                   log_argv=self.log_command)
        if not self.roles:
            object.__setattr__(self, "roles", (Role(APP_ROLE, tuple(self.hosts), self.reload_command,
                                                    self.health_url, self.batch),))
        if self.primary is None and self.hosts:
            object.__setattr__(self, "primary", self.hosts[0])

    def role_of(self, host) -> Role:
        """The role of one of the stage's hosts (a Host or its spec)."""
        spec = str(host)
        return next((r for r in self.roles if any(str(h) == spec for h in r.hosts)), self.roles[0])

    def hook(self, key: str, host=None) -> Hook | None:
        """The stage's hook of key; with a host, that host's: its role's `key.<role>` where written (an empty
        one: none), else the key's."""
        if host is not None:
            role = self.role_of(host).name
            own = next((h for h in self.hooks if h.key == key and h.role == role), None)
            if own is not None:
                return own if own.argv else None
        return next((h for h in self.hooks if h.key == key and not h.role), None)

    def has_hook(self, key: str) -> bool:
        """Any host (or this machine) runs a hook of key."""
        return any(h.key == key and h.argv for h in self.hooks)

    @property
    def chain_task(self) -> str:
        """The doit task that brings this stage up to date: promote:<name> or deploy:<name>."""
        return f"{'promote' if self.promote_from else 'deploy'}:{self.name}"


@dataclass(frozen=True)
class Project:
    name: str
    source: Path
    scm: str = "auto"
    revision: str = ""
    deploy_root: str = "/srv/app"
    build: str = "pip"
    build_command: str = ""
    migrate_command: str = "python manage.py migrate --noinput"
    reload_command: str = ""
    reload_timeout: int = 60
    health_url: str = ""
    health_timeout: int = 30
    keep_releases: int = 5
    keep_backups: int = 10
    backup_max_age: int = 86400
    ssh_config: Path | None = None
    ssh_fast_kex: bool = False   # curve25519 ahead of OpenSSH's post-quantum default (remote_shell.ssh_options)
    parallel: int = 10
    artifact_store: str = "push"
    s3_endpoint: str = ""
    s3_region: str = ""
    shared_dirs: tuple[str, ...] = ()
    shared_files: tuple[str, ...] = ()
    stage_dirs: tuple[str, ...] = ()
    infra_tests: Path | None = None   # the project's own testinfra checks, run by verify beside the built-in
    max_write_stall: int = 5   # seconds; promote:staging refuses a rehearsal that measured a longer stall
    buildout_config: str = "buildout.cfg"
    requirements: str = "requirements.txt"   # build = pip: the file pip reads, inside the release
    health_headers: tuple[tuple[str, str], ...] = ()
    hooks: tuple[Hook, ...] = ()   # the hook keys of [project], which every stage takes unless it sets its own
    console_command: str = "python manage.py shell"
    log_command: str = ""
    # the command keys split into argv (shlex), when the config is built: a bad one fails the load, not a switch
    build_argv: tuple[str, ...] = field(init=False, repr=False)
    migrate_argv: tuple[str, ...] = field(init=False, repr=False)
    reload_argv: tuple[str, ...] = field(init=False, repr=False)
    console_argv: tuple[str, ...] = field(init=False, repr=False)
    log_argv: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _set_argvs(self, build_argv=self.build_command, migrate_argv=self.migrate_command,
                   reload_argv=self.reload_command, console_argv=self.console_command, log_argv=self.log_command)

    def hook(self, key: str) -> Hook | None:
        return next((h for h in self.hooks if h.key == key), None)

    @property
    def store(self) -> S3Store | None:
        """The S3 store of artifact_store = s3://..., or None for push (validated when loaded)."""
        if self.artifact_store == "push":
            return None
        bucket, prefix = parse_store(self.artifact_store)
        return S3Store(bucket, prefix, self.s3_endpoint.rstrip("/"), self.s3_region)


@dataclass(frozen=True)
class Config:
    path: Path
    project: Project
    databases: dict[str, Database] = field(default_factory=dict)
    stages: dict[str, Stage] = field(default_factory=dict)
    # the secrets' values by stage, read once per run for the commands that write an env file
    # (config.appenv.read_secrets): never in a repr, never compared
    secret_values_read: dict[str, dict[str, str]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def workdir(self) -> Path:
        """doit's dep file and build/ live next to the stages.ini in use."""
        return self.path.parent

    @property
    def build_dir(self) -> Path:
        return self.workdir / "build"

    def build_command(self, stage: Stage, host) -> tuple[str, tuple[str, ...]]:
        """(build_command as written, its argv) for one host of the stage: its role's, else the project's."""
        role = stage.role_of(host)
        if role.build_command is None:
            return self.project.build_command, self.project.build_argv
        return role.build_command, role.build_argv

    def stage_database(self, stage: Stage) -> Database | None:
        return self.databases[stage.database] if stage.database else None

    def migrates(self, stage: Stage) -> bool:
        """The stage has a migrate node: a database, not the one of the stage it is promoted from."""
        src = self.stages.get(stage.promote_from) if stage.promote_from else None
        return bool(stage.database) and (src is None or src.database != stage.database)

    def secret_values(self, stage: Stage) -> dict[str, str]:
        """The values of the stage's secrets, by name ({} when it has none); ConfigError when this run has
        not read them (only the commands that write an env file do: appenv.read_secrets)."""
        if not stage.secrets:
            return {}
        if stage.name not in self.secret_values_read:
            raise ConfigError(f"the secrets of stage {stage.name} ([secrets]) were not read in this run; "
                              f"run doit build:{stage.name} (or {stage.chain_task})")
        return self.secret_values_read[stage.name]

    def require_passwords(self, names) -> None:
        """ConfigError (one line: file, line, key, variable) for the first of these databases whose
        password_env variable was not set when the config was loaded."""
        for name in names:
            if self.databases[name].missing_password:
                raise ConfigError(self.databases[name].missing_password)
