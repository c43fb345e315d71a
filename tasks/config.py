"""stages.ini -> frozen dataclasses. All validation lives here; every other module trusts the result.

Every error is a ConfigError whose message is one line naming the file, line, section and key, and what
to change. Nothing here touches a host or a database.
"""
from __future__ import annotations

import configparser
import importlib.util
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import config_rules as rules

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
DURATION_RE = re.compile(r"^(\d+)\s*([smhd]?)$")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# S3 bucket names (the rules every S3-compatible store accepts) and keys' safe characters
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ConfigError(Exception):
    """A mistake in stages.ini (or its environment) that the user can fix."""


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
        """What {host} in health_url becomes."""
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


def check_endpoint(text: str) -> None:
    """s3_endpoint: http(s)://host[:port], nothing else (the URLs are signed for exactly this address)."""
    parts = urlsplit(text)
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{text!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{text!r} is not http(s)://host[:port]")


@dataclass(frozen=True)
class Database:
    name: str                # the section's name: [database:<name>]
    engine: str              # mysql | sqlite
    dbname: str = ""
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = ""
    password_env: str = ""
    option_file: str = ""
    path: str = ""           # sqlite: the file on the backup host
    backup_host: Host | None = None
    restore_on_failed_migration: bool = False
    # mysql: how long the migration's session waits for a lock (metadata or row) before giving up, and how
    # many times the migration is tried again after that (steps/migrate_bounded.py)
    migration_lock_timeout: int = 10
    migration_lock_retries: int = 3
    # The password, read from the environ given to load_config (validated to be set there): never in a repr
    # (doit and pytest print them), never compared or hashed. doit's dep file stores only what actions
    # return, never the config.
    secret: str = field(default="", repr=False, compare=False)

    def password(self) -> str:
        """The password of password_env as the environment given to load_config had it ("" with option_file)."""
        return self.secret


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
    batch: str = "100%"
    max_fail: int = 0
    buildout_config: str = "buildout.cfg"   # build = buildout: the config this stage's buildout runs


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
    health_url: str = ""
    health_timeout: int = 30
    keep_releases: int = 5
    keep_backups: int = 10
    backup_max_age: int = 86400
    ssh_config: Path | None = None
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

    @property
    def workdir(self) -> Path:
        """doit's dep file and build/ live next to the stages.ini in use."""
        return self.path.parent

    @property
    def build_dir(self) -> Path:
        return self.workdir / "build"

    def stage_database(self, stage: Stage) -> Database | None:
        return self.databases[stage.database] if stage.database else None



PROJECT_KEYS = {f for f in Project.__dataclass_fields__}
DATABASE_KEYS = {"engine", "host", "port", "name", "user", "password_env", "option_file", "path",
                 "backup_host", "restore_on_failed_migration", "migration_lock_timeout", "migration_lock_retries"}
MAX_LOCK_TIMEOUT = 31536000  # a year: MySQL's own maximum of lock_wait_timeout
MAX_LOCK_RETRIES = 100
STAGE_KEYS = {"hosts", "link", "settings", "database", "restore_from", "promote_from", "health_url",
              "health_timeout", "reload_command", "batch", "max_fail", "buildout_config"}
# Implemented choices; the others DESIGN.md names are refused with a clear message, not faked.
BUILDS = {"pip", "buildout", "command", "none"}


def config_path(environ: dict | None = None, base: str | Path | None = None) -> Path:
    """$STAGES_INI, else ./stages.ini; a relative path is taken from `base` (where the user ran doit)."""
    environ = os.environ if environ is None else environ
    path = Path(environ.get("STAGES_INI") or "stages.ini")
    return path if path.is_absolute() else Path(base or os.getcwd()).absolute() / path


def load_config(path: Path | str | None = None, environ: dict | None = None) -> Config:
    path = Path(path).absolute() if path else config_path(environ)
    environ = os.environ if environ is None else environ
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; create a stages.ini or point STAGES_INI at one")
    text = path.read_text()
    return _Parser(path, text, environ).parse()


def parse_host(spec: str) -> Host:
    """'local' or 'ssh://[user@]host[:port]'; raises ValueError with the reason."""
    spec = spec.strip()
    if spec == "local":
        return Host("local")
    if not spec.startswith("ssh://"):
        raise ValueError(f"host {spec!r} is neither 'local' nor 'ssh://[user@]host[:port]'")
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"host {spec!r} has a bad port") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise ValueError(f"host {spec!r} is not of the form ssh://[user@]host[:port]")
    # ssh would read a user or host starting with '-' as an option (-oProxyCommand=...): refused here
    problem = rules.hostname_problem(parts.hostname) or (
        rules.user_problem(parts.username) if parts.username is not None else None)
    if problem:
        raise ValueError(f"host {spec!r}: {problem}")
    return Host(spec, parts.hostname, parts.username, port)


def parse_duration(text: str) -> int:
    m = DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 24h or 2d")
    return int(m.group(1)) * DURATION_UNITS[m.group(2)]


def split_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


class _Parser:
    def __init__(self, path: Path, text: str, environ):
        self.path, self.text, self.environ = path, text, environ
        self.lines = _key_lines(text)
        self.cp = configparser.ConfigParser(inline_comment_prefixes=(";",), comment_prefixes=("#", ";"),
                                            interpolation=None, default_section="\0none")
        self.cp.optionxform = str  # keys are case-sensitive, as written in DESIGN.md
        try:
            self.cp.read_string(text, source=str(path))
        except configparser.Error as exc:
            raise ConfigError(f"{path.name}: {' '.join(str(exc).split())}; fix the syntax") from None

    def fail(self, section: str, key: str | None, msg: str):
        line = self.lines.get((section, key)) or self.lines.get((section, None))
        where = f"{self.path.name}:{line}" if line else self.path.name
        what = f"[{section}] {key}" if key else f"[{section}]"
        raise ConfigError(f"{where}: {what}: {msg}")

    def get(self, section, key, default=""):
        return self.cp.get(section, key, fallback=default).strip()

    def integer(self, section, key, default: int, minimum: int = 0) -> int:
        raw = self.get(section, key, str(default))
        if not re.fullmatch(r"\d+", raw) or int(raw) < minimum:
            self.fail(section, key, f"{raw!r} is not a whole number >= {minimum}; write e.g. {default}")
        return int(raw)

    def duration(self, section, key, default: int) -> int:
        try:
            return parse_duration(self.get(section, key, f"{default}s"))
        except ValueError as exc:
            self.fail(section, key, str(exc))

    def boolean(self, section, key) -> bool:
        raw = self.get(section, key, "no").lower()
        if raw not in ("yes", "no", "true", "false", "1", "0", "on", "off"):
            self.fail(section, key, f"{raw!r} is not yes or no")
        return raw in ("yes", "true", "1", "on")

    def check_keys(self, section, allowed):
        for key in self.cp[section]:
            if key == "password" and section.startswith("database:"):
                self.fail(section, key, "never write a password in stages.ini; name an environment "
                                        "variable with password_env (or an option_file on the host)")
            if key not in allowed:
                self.fail(section, key, f"unknown key; known keys: {', '.join(sorted(allowed))}")

    def check_rule(self, section, key, rule, value=None):
        value = self.get(section, key) if value is None else value
        problem = rule(value) if value else None
        if problem:
            self.fail(section, key, problem)

    def relpath(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def parse(self) -> Config:
        sections = self.cp.sections()
        for s in sections:
            kind, _, name = s.partition(":")
            if s != "project" and (kind not in ("database", "stage") or not NAME_RE.match(name)):
                self.fail(s, None, "unknown section; use [project], [database:<name>] or [stage:<name>]")
        if "project" not in sections:
            raise ConfigError(f"{self.path.name}: no [project] section; add one with at least name = and source =")
        project = self.parse_project()
        for s in sections:
            if s.startswith("stage:"):
                self.check_keys(s, STAGE_KEYS)
        stage_hosts = {s[6:]: self.parse_hosts(s) for s in sections if s.startswith("stage:")}
        databases = {s[9:]: self.parse_database(s, s[9:], stage_hosts) for s in sections
                     if s.startswith("database:")}
        stages = {n: self.parse_stage(f"stage:{n}", n, hosts, project, databases)
                  for n, hosts in stage_hosts.items()}
        if not stages:
            raise ConfigError(f"{self.path.name}: no [stage:<name>] section; add [stage:test] with hosts = local")
        self.check_stage_graph(stages)
        self.check_restore_targets(stages, databases)
        all_local = all(h.local for st in stages.values() for h in st.hosts) and all(
            d.backup_host is None or d.backup_host.local for d in databases.values())
        project, databases = self.resolve_paths(project, databases, all_local)
        return Config(self.path, project, databases, stages)

    def parse_project(self) -> Project:
        s = "project"
        self.check_keys(s, PROJECT_KEYS)
        name = self.get(s, "name")
        if not NAME_RE.match(name):
            self.fail(s, "name", f"{name!r} must be letters, digits, '-' or '_' (it goes into release ids)")
        source = self.get(s, "source")
        if not source:
            self.fail(s, "source", "missing; set it to the app's repository (git or hg), relative to this file")
        scm = self.get(s, "scm", "auto")
        if scm not in ("auto", "git", "hg"):
            self.fail(s, "scm", f"{scm!r} is not auto, git or hg")
        build = self.get(s, "build", "pip")
        if build not in BUILDS:
            self.fail(s, "build", f"{build!r} is not supported; use pip, buildout, command or none")
        store = self.get(s, "artifact_store", "push")
        self.check_store(store)
        ssh_config = self.get(s, "ssh_config")
        infra_tests = self.relpath(self.get(s, "infra_tests")) if self.get(s, "infra_tests") else None
        if infra_tests and not infra_tests.is_dir():
            self.fail(s, "infra_tests", f"{infra_tests} is not a directory; point it at your testinfra checks "
                                        "(relative to this file) or remove the key")
        dirs = {k: split_list(self.get(s, k, d)) for k, d in
                (("shared_dirs", ""), ("shared_files", ""), ("stage_dirs", ""))}
        for key, names in dirs.items():
            for n in names:
                problem = rules.shared_name_problem(n)
                if problem:
                    self.fail(s, key, f"{problem}; it must be a relative path inside the release, without '..'")
        self.check_rule(s, "health_url", rules.health_url_problem)
        self.check_rule(s, "revision", rules.control_char_problem)
        return Project(
            name=name, source=self.relpath(source), scm=scm, revision=self.get(s, "revision"),
            deploy_root=self.get(s, "deploy_root", "/srv/" + name).rstrip("/") or "/", build=build,
            build_command=self.get(s, "build_command"),
            migrate_command=self.get(s, "migrate_command", Project.migrate_command),
            reload_command=self.get(s, "reload_command"), health_url=self.get(s, "health_url"),
            health_timeout=self.duration(s, "health_timeout", 30),
            keep_releases=self.integer(s, "keep_releases", 5, 1),
            keep_backups=self.integer(s, "keep_backups", 10, 1),
            backup_max_age=self.duration(s, "backup_max_age", 86400),
            ssh_config=self.relpath(ssh_config) if ssh_config else None,
            parallel=self.integer(s, "parallel", 10, 1), artifact_store=store,
            s3_endpoint=self.get(s, "s3_endpoint"), s3_region=self.get(s, "s3_region"), infra_tests=infra_tests,
            max_write_stall=self.duration(s, "max_write_stall", 5),
            buildout_config=self.buildout_config(s, build, "buildout.cfg"), **dirs)

    def buildout_config(self, s, build: str, default: str) -> str:
        """A config file inside the release, read only by build = buildout (a stray one is a mistake)."""
        value = self.get(s, "buildout_config", default)
        if self.cp.has_option(s, "buildout_config") and build != "buildout":
            self.fail(s, "buildout_config", f"only used with build = buildout (build is {build}); remove it")
        problem = rules.relative_path_problem(value)
        if problem:
            self.fail(s, "buildout_config", f"{value!r} must be a file inside the release, like buildout.cfg")
        return value

    def check_store(self, store: str) -> None:
        s = "project"
        if store != "push":
            try:
                parse_store(store)
            except ValueError as exc:
                self.fail(s, "artifact_store", f"{exc}; write push or s3://bucket/prefix")
            if importlib.util.find_spec("boto3") is None:
                self.fail(s, "artifact_store", "an S3 store needs boto3 on this machine; "
                                               "pip install 'doit-stages[s3]' (or boto3)")
        for key in ("s3_endpoint", "s3_region"):
            if self.get(s, key) and store == "push":
                self.fail(s, key, "only used with artifact_store = s3://bucket/prefix; remove it or set that")
        endpoint, region = self.get(s, "s3_endpoint"), self.get(s, "s3_region")
        if endpoint:
            try:
                check_endpoint(endpoint)
            except ValueError as exc:
                self.fail(s, "s3_endpoint", f"{exc}; write e.g. http://store.internal:9000")
        if region and not REGION_RE.match(region):
            self.fail(s, "s3_region", f"{region!r} is not a region name like eu-west-1")

    def parse_hosts(self, s) -> tuple[Host, ...]:
        raw = split_list(self.get(s, "hosts"))
        if not raw:
            self.fail(s, "hosts", "missing; list the stage's hosts, e.g. hosts = ssh://deploy@web1:22 (or local)")
        out = []
        for spec in raw:
            try:
                out.append(parse_host(spec))
            except ValueError as exc:
                self.fail(s, "hosts", f"{exc}; write 'local' or ssh://[user@]host[:port]")
        return tuple(out)

    def parse_database(self, s, name, stage_hosts) -> Database:
        self.check_keys(s, DATABASE_KEYS)
        engine = self.get(s, "engine", "mysql")
        bh = self.get(s, "backup_host")
        try:
            backup_host = parse_host(bh) if bh else None
        except ValueError as exc:
            self.fail(s, "backup_host", f"{exc}; write 'local' or ssh://[user@]host[:port]")
        if backup_host is None:
            users = [n for n in stage_hosts if self.get(f"stage:{n}", "database") == name]
            backup_host = stage_hosts[users[0]][0] if users else None
        common = dict(name=name, engine=engine, backup_host=backup_host,
                      restore_on_failed_migration=self.boolean(s, "restore_on_failed_migration"))
        if engine == "sqlite":
            for key in ("host", "port", "user", "password_env", "option_file", "name", "migration_lock_timeout",
                        "migration_lock_retries"):
                if self.cp.has_option(s, key):
                    self.fail(s, key, "not used with engine = sqlite; remove it (sqlite takes only path)")
            if not self.get(s, "path"):
                self.fail(s, "path", "missing; engine = sqlite needs path = <database file on the host>")
            return Database(path=self.get(s, "path"), **common)
        if engine != "mysql":
            self.fail(s, "engine", f"{engine!r} is not mysql or sqlite")
        for key in ("name", "user"):
            if not self.get(s, key):
                self.fail(s, key, f"missing; engine = mysql needs {key} =")
        for key in ("name", "user", "host"):
            self.check_rule(s, key, lambda v, key=key: rules.db_value_problem(key, v))
        self.check_rule(s, "option_file", rules.option_file_problem)
        if self.cp.has_option(s, "path"):
            self.fail(s, "path", "only for engine = sqlite; remove it")
        env, opt = self.get(s, "password_env"), self.get(s, "option_file")
        if not env and not opt:
            self.fail(s, "password_env", "missing; name the environment variable holding the password "
                                         "(or set option_file = a MySQL option file on the host)")
        if env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
            self.fail(s, "password_env", f"{env!r} is not an environment variable name")
        if env and env not in self.environ:
            self.fail(s, "password_env", f"environment variable {env} is not set; export it before running doit")
        return Database(dbname=self.get(s, "name"), host=self.get(s, "host", "127.0.0.1"),
                        port=self.integer(s, "port", 3306, 1), user=self.get(s, "user"),
                        password_env=env, option_file=opt, secret=self.environ[env] if env else "",
                        **self.lock_waits(s), **common)

    def lock_waits(self, s) -> dict:
        timeout = self.duration(s, "migration_lock_timeout", 10)
        if not 1 <= timeout <= MAX_LOCK_TIMEOUT:
            self.fail(s, "migration_lock_timeout", f"{self.get(s, 'migration_lock_timeout')!r} is not between 1s "
                                                   "and 365d; write e.g. 10s")
        retries = self.integer(s, "migration_lock_retries", 3)
        if retries > MAX_LOCK_RETRIES:
            self.fail(s, "migration_lock_retries", f"{retries} is more than {MAX_LOCK_RETRIES}; write e.g. 3")
        return {"migration_lock_timeout": timeout, "migration_lock_retries": retries}

    def parse_stage(self, s, name, hosts, project, databases) -> Stage:
        db = self.get(s, "database") or None
        if db and db not in databases:
            self.fail(s, "database", f"names [database:{db}], which does not exist; add it or fix the name")
        restore_from = self.get(s, "restore_from") or None
        if restore_from and restore_from not in databases:
            self.fail(s, "restore_from",
                      f"names [database:{restore_from}], which does not exist; add it or fix the name")
        if restore_from and not db:
            self.fail(s, "restore_from", "needs database = (the database to refresh)")
        if restore_from and restore_from == db:
            self.fail(s, "restore_from", "must name another database than the stage's own")
        link = self.get(s, "link", f"sites/{name}")
        self.check_rule(s, "link", lambda v: rules.link_problem(v, name, {}), link)
        self.check_rule(s, "settings", rules.settings_problem)
        self.check_rule(s, "health_url", rules.health_url_problem)
        batch = self.get(s, "batch", "100%")
        if not re.fullmatch(r"\d+%?", batch) or int(batch.rstrip("%")) == 0:
            self.fail(s, "batch", f"{batch!r} is not a number of hosts or a share like 50%")
        if db and databases[db].engine == "sqlite" and len(set(hosts)) > 1:
            self.fail(s, "hosts", f"{len(set(hosts))} hosts share [database:{db}], an sqlite file: each host would "
                                  "have its own database; use one host, or engine = mysql")
        if db and not self.get(s, "settings"):
            self.fail(s, "settings", "missing; name the DJANGO_SETTINGS_MODULE this stage runs with")
        return Stage(name=name, hosts=hosts, link=link, settings=self.get(s, "settings"), database=db,
                     restore_from=restore_from, promote_from=self.get(s, "promote_from") or None,
                     health_url=self.get(s, "health_url", project.health_url),
                     health_timeout=self.duration(s, "health_timeout", project.health_timeout),
                     reload_command=self.get(s, "reload_command", project.reload_command),
                     batch=batch, max_fail=self.integer(s, "max_fail", 0),
                     buildout_config=self.buildout_config(s, project.build, project.buildout_config))

    def check_stage_graph(self, stages):
        links = {}
        for st in stages.values():
            if st.link in links.values():
                other = next(n for n, ln in links.items() if ln == st.link)
                self.fail(f"stage:{st.name}", "link",
                          f"{st.link} is already the link of stage {other}; give each stage its own link")
            self.check_rule(f"stage:{st.name}", "link", lambda v: rules.link_problem(v, st.name, links), st.link)
            links[st.name] = st.link
            if st.promote_from and st.promote_from not in stages:
                self.fail(f"stage:{st.name}", "promote_from",
                          f"names [stage:{st.promote_from}], which does not exist; add it or fix the name")
        for st in stages.values():
            seen, cur = [st.name], st
            while cur.promote_from:
                cur = stages[cur.promote_from]
                if cur.name in seen:
                    self.fail(f"stage:{st.name}", "promote_from",
                              f"promote_from forms a cycle ({' -> '.join(seen + [cur.name])}); break it")
                seen.append(cur.name)

    def check_restore_targets(self, stages, databases):
        """A database that restore:<stage> drops and reloads must not be its source, nor any database a
        stage without restore_from runs on (production): compared by server and schema, not section name."""
        def ident(db):
            return rules.database_identity(db.engine, db.host, db.port, db.dbname,
                                           str(db.backup_host) if db.backup_host else "", db.path)
        live = {st.database: st.name for st in stages.values() if st.database and not st.restore_from}
        for st in stages.values():
            if not st.restore_from:
                continue
            target = databases[st.database]
            key = "path" if target.engine == "sqlite" else "name"
            if st.database in live:
                self.fail(f"stage:{st.name}", "database",
                          f"[database:{st.database}] is also the database of stage {live[st.database]}, which "
                          f"runs on it; restore:{st.name} would drop it: give stage {st.name} a database of its own")
            protected = {st.restore_from: f"the source of restore_from in stage {st.name}",
                         **{d: f"the database of stage {n}" for d, n in live.items()}}
            for other, why in protected.items():
                if other != st.database and ident(databases[other]) == ident(target):
                    where = (target.path if target.engine == "sqlite"
                             else f"{target.dbname} on {target.host}:{target.port}")
                    self.fail(f"database:{st.database}", key,
                              f"{where} is the same database as [database:{other}] ({why}); restore:{st.name} "
                              f"would drop it: give [database:{st.database}] a database of its own")

    def resolve_paths(self, project, databases, all_local):
        """Relative deploy_root / sqlite paths only make sense when every host is this machine."""
        root = project.deploy_root
        if not root.startswith("/"):
            if not all_local:
                self.fail("project", "deploy_root",
                          f"{root!r} must be an absolute path on the hosts, e.g. /srv/{project.name}")
            project = _replace(project, deploy_root=str(self.relpath(root)))
        self.check_rule("project", "deploy_root", rules.absolute_path_problem, project.deploy_root)
        out = {}
        for name, db in databases.items():
            if db.engine == "sqlite" and not db.path.startswith("/"):
                if not all_local:
                    self.fail(f"database:{name}", "path", f"{db.path!r} must be an absolute path on the host")
                db = _replace(db, path=str(self.relpath(db.path)))
            if db.engine == "sqlite":
                self.check_rule(f"database:{name}", "path", rules.absolute_path_problem, db.path)
            out[name] = db
        return project, out


def _replace(obj, **changes):
    return replace(obj, **changes)


def _key_lines(text: str) -> dict:
    """(section, key) -> line number, for error messages; (section, None) -> the header's line."""
    lines, section = {}, None
    for no, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
            lines.setdefault((section, None), no)
            continue
        m = re.match(r"^([^\s=:;#][^=:]*?)\s*[=:]", line)
        if m and section:
            lines.setdefault((section, m.group(1).strip()), no)
    return lines
