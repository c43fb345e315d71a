"""[project]: its keys, each with its parser, default and doc; read_project builds the Project.

Keys are read in table order, and a parser may use the keys above it (s3_endpoint reads artifact_store,
buildout_config reads build). deploy_root is made absolute later, when all hosts are known (config_checks).
"""
from __future__ import annotations

import importlib.util

from . import rules
from .hooks import HOOKS, read_hooks
from .model import Project, parse_store
from .reader import (
    Ini,
    Key,
    Problem,
    Section,
    boolean,
    checked,
    choice,
    command,
    duration,
    headers,
    timeout,
    whole,
)
from .roles import allowed_role_keys, role_key_problems
from .values import NAME_RE, REGION_RE, check_endpoint, split_list

# Implemented choices (docs/configuration.md); any other is refused with a clear message, not faked.
BUILDS = ("pip", "buildout", "command", "none")


def name(value: str, sec: Section) -> str:
    if not NAME_RE.match(value):
        raise Problem(f"{value!r} must be letters, digits, '-' or '_' (it goes into release ids)")
    return value


def source(value: str, sec: Section):
    if not value:
        raise Problem("missing; set it to the app's repository (git or hg), relative to this file")
    return sec.ini.relpath(value)


def artifact_store(value: str, sec: Section) -> str:
    if value != "push":
        try:
            parse_store(value)
        except ValueError as exc:
            raise Problem(f"{exc}; write push or s3://bucket/prefix") from None
        if importlib.util.find_spec("boto3") is None:
            raise Problem("an S3 store needs boto3 on this machine; pip install 'doit-stages[s3]' (or boto3)")
    return value


def s3_only(check):
    """A key that only an s3:// artifact_store reads; `check` raises Problem on a bad value."""
    def parse(value: str, sec: Section) -> str:
        if value and sec.values["artifact_store"] == "push":
            raise Problem("only used with artifact_store = s3://bucket/prefix; remove it or set that")
        if value:
            check(value)
        return value
    return parse


def endpoint(value: str) -> None:
    try:
        check_endpoint(value)
    except ValueError as exc:
        raise Problem(f"{exc}; write e.g. http://store.internal:9000") from None


def region(value: str) -> None:
    if not REGION_RE.match(value):
        raise Problem(f"{value!r} is not a region name like eu-west-1")


def optional_path(value: str, sec: Section):
    return sec.ini.relpath(value) if value else None


def infra_tests(value: str, sec: Section):
    path = optional_path(value, sec)
    if path and not path.is_dir():
        raise Problem(f"{path} is not a directory; point it at your testinfra checks (relative to this file) "
                      "or remove the key")
    return path


def shared_names(value: str, sec: Section) -> tuple[str, ...]:
    names = split_list(value)
    for n in names:
        problem = rules.shared_name_problem(n)
        if problem:
            raise Problem(f"{problem}; it must be a relative path inside the release, without '..'")
    return names


def deploy_root(value: str, sec: Section) -> str:
    return value.rstrip("/") or "/"


def buildout_config(value: str, sec: Section) -> str:
    """A config file inside the release, read only by build = buildout (a stray one is a mistake).
    Project and stage sections both have it: a stage reads build from the project in its scope."""
    build = sec.values["build"] if "build" in sec.values else sec.scope["project"].build
    if sec.written("buildout_config") and build != "buildout":
        raise Problem(f"only used with build = buildout (build is {build}); remove it")
    if rules.relative_path_problem(value):
        raise Problem(f"{value!r} must be a file inside the release, like buildout.cfg")
    return value


def requirements(value: str, sec: Section) -> str:
    """build = pip: the requirements file inside the release (its -r / -c includes are resolved there)."""
    if sec.written("requirements") and sec.values["build"] != "pip":
        raise Problem(f"only used with build = pip (build is {sec.values['build']}); remove it")
    if rules.relative_path_problem(value):
        raise Problem(f"{value!r} must be a file inside the release, like requirements/production.txt")
    return value


PROJECT: dict[str, Key] = {
    "name": Key(name, "", "letters, digits, '-', '_': used in release ids and backup names"),
    "source": Key(source, "", "the app's repository, git or hg; relative to this file"),
    "scm": Key(choice(("auto", "git", "hg"), "is not auto, git or hg"), "auto", "auto | git | hg"),
    "build": Key(choice(BUILDS, "is not supported; use pip, buildout, command or none"), "pip",
                 "pip | buildout | command | none (pip: a venv in the release from a wheelhouse built once)"),
    "artifact_store": Key(artifact_store, "push", "push | s3://bucket/prefix (s3: uploaded once, hosts pull)"),
    "s3_endpoint": Key(s3_only(endpoint), "",
                       "an S3-compatible store other than AWS: http(s)://host[:port]"),
    "s3_region": Key(s3_only(region), "", "the region presigned URLs are signed for"),
    "ssh_config": Key(optional_path, "", "an OpenSSH config file (relative to this file), passed as ssh -F"),
    "ssh_fast_kex": Key(boolean, "no", "yes: curve25519 ahead of OpenSSH's post-quantum default (faster logins, "
                        "weaker against recorded traffic)"),
    "infra_tests": Key(infra_tests, "", "a directory of the project's own testinfra checks, run by verify"),
    "shared_dirs": Key(shared_names, "", "kept under shared/, linked into every release"),
    "shared_files": Key(shared_names, "", "likewise, files (a missing one stops the run before any switch)"),
    "stage_dirs": Key(shared_names, "", "per stage and release under shared/<stage>/<id>/ (STAGE_DIR), built afresh"),
    "health_url": Key(checked(rules.health_url_problem), "",
                      "optional, per stage too; {host} is the host's HostName (ssh -G)"),
    "revision": Key(checked(rules.control_char_problem), "", "the default revision deploy:test ships"),
    "deploy_root": Key(deploy_root, lambda sec: "/srv/" + sec.values["name"],
                       "on every host: releases/ sites/ shared/ db_backup/ .deploy/"),
    "build_command": Key(command, "", "run inside the release after the build (the whole build for command)",
                         shell=True),
    "migrate_command": Key(command, Project.migrate_command, "the app's migrate command", shell=True),
    "reload_command": Key(command, "", "run on each host after a switch (per stage too)", shell=True),
    "reload_timeout": Key(timeout, "60s", "how long reload_command may run on a host before it counts as failed "
                          "(its process group is ended, every host goes back); per stage too"),
    "console_command": Key(command, "python manage.py shell", "doit console:<stage>: the interactive command run "
                           "in the live release, with its env (per stage too)", shell=True),
    "log_command": Key(command, "", "doit logs:<stage>: the command followed on every host, in deploy_root, e.g. "
                       "tail -F shared/log/app.log (per stage too)", shell=True),
    "health_timeout": Key(duration, "30s", "how long the health check may take (per stage too)"),
    "health_headers": Key(headers, "", "sent with the health check (per stage too), e.g. Host: blog.example.com"),
    "keep_releases": Key(whole(1), "5", "the last N good releases of each stage kept on the hosts"),
    "keep_backups": Key(whole(1), "10", "routine backups kept per database"),
    "backup_max_age": Key(duration, "24h", "deploy:test takes a fresh prod backup when the newest is older"),
    "parallel": Key(whole(1), "10", "hosts worked on at once within a node: uploads, builds, reloads, "
                   "hooks, logins through a ProxyJump (reads, locks and renames: every host at once)"),
    "max_write_stall": Key(duration, "5s", "promote:staging refuses a rehearsal with a longer write stall"),
    "buildout_config": Key(buildout_config, "buildout.cfg", "build = buildout: the config run in the release"),
    "requirements": Key(requirements, "requirements.txt",
                        "build = pip: the file pip reads (its -r / -c includes resolved in the archive)"),
}


def read_project(ini: Ini) -> Project:
    # [project] may write `<hook key>.<role>` (for every stage with that role), no other role key
    suffixed = {k for k in allowed_role_keys(ini, "project", tuple(HOOKS)) if not k.startswith("hosts.")}
    ini.check_keys("project", {**PROJECT, **HOOKS, **dict.fromkeys(suffixed)},
                   role_key_problems(ini, "project", tuple(HOOKS), declared=False))
    return Project(**Section(ini, "project", PROJECT).read(), hooks=read_hooks(ini, "project"))
