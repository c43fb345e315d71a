"""Names and paths: pure functions, no I/O. One place that knows how a host's deploy_root is laid out."""
from __future__ import annotations

import posixpath
import re
from datetime import datetime, timezone

RELEASE_RE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)-(?P<when>\d{4}-\d{2}-\d{2}-\d{4})-(?P<rev>[0-9a-f]{12})$")
# The shell's pattern for the same (a case pattern in the host scripts: a stage-dir generation's name)
RELEASE_GLOB = "?*-" + "[0-9]" * 4 + "-[0-9][0-9]-[0-9][0-9]-" + "[0-9]" * 4 + "-" + "[0-9a-f]" * 12
READY = ".deploy-ready"          # in a release: unpacked, REVISION written, shared links made, built
RELEASE_META = ".deploy-release.json"   # in a release: its Release (id, revision, sha256, wheels) as JSON
ENV_DIR = ".deploy-env"          # in a release (0700): <stage>.env (0600), what the release runs with on that stage
REVISION = "REVISION"            # in a release: its full revision (Capistrano's name)
VENV_LINK = ".venv"              # in a release (build = pip | buildout): a link to its venv under .deploy/venvs/
BUILDOUT_DIR = ".buildout"       # in a release (build = buildout): eggs/ and each stage's part
# Names the tool writes at the top of every release: an archive holding one is refused (archive.py), and
# the unpack never extracts them (a shipped ready marker would make a half-unpacked release look ready).
TOOL_NAMES = (READY, RELEASE_META, ENV_DIR, REVISION, VENV_LINK, BUILDOUT_DIR)
ENV_TOKEN_RE = re.compile(r"^[0-9a-f]{12}$")   # names one env file version: <stage>.<token>.env


def release_id(name: str, commit_time: int, revision: str) -> str:
    """<name>-<YYYY-MM-DD-HHMM>-<revision, 12 hex>; the commit's UTC time, so one revision gives one id."""
    when = datetime.fromtimestamp(commit_time, timezone.utc).strftime("%Y-%m-%d-%H%M")
    return f"{name}-{when}-{revision[:12]}"


def is_release_id(text: str) -> bool:
    return bool(RELEASE_RE.match(text))


def backup_name(project: str, database: str, when: datetime) -> str:
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S") + f".{when.microsecond // 1000:03d}Z"
    return f"{project}-{database}-{stamp}"


class Layout:
    """Paths under deploy_root on a host."""

    def __init__(self, root: str):
        self.root = root.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @property
    def releases(self) -> str:
        return self.join("releases")

    def release(self, rid: str) -> str:
        return self.join("releases", rid)

    @property
    def shared(self) -> str:
        return self.join("shared")

    def stage_dirs(self, stage: str) -> str:
        """shared/<stage>/: the stage's generations of its stage_dirs, one a release (stage_dir)."""
        return self.join("shared", stage)

    def stage_dir(self, stage: str, rid: str) -> str:
        """STAGE_DIR of a release on a stage: its own generation of the stage_dirs, built fresh by its build
        for the stage while another release is live there, so the live one's are never touched; it goes
        with the release (cleanup), so a rollback returns to the stage dirs the release ran with."""
        return self.join("shared", stage, rid)

    def env_file(self, stage: str) -> str:
        """What an app server loads (EnvironmentFile=): a symlink through the stage's link to the env file of
        the release live on the stage, so it switches with the link (see release_env)."""
        return self.join("shared", f"{stage}.env")

    def release_env(self, rid: str, stage: str) -> str:
        """The environment a release runs with on a stage: a hard link to one of its versions (env_version),
        set only by the switch (by rename), kept with the release, removed with it. A put-back or rollback
        returns to it unchanged."""
        return self.join("releases", rid, ENV_DIR, f"{stage}.env")

    def env_version(self, rid: str, stage: str, token: str) -> str:
        """One version of the release's environment on a stage, never changed once written (0600): a changed
        environment is a new version; <stage>.env is a hard link to the one live, moved only by the switch."""
        if not ENV_TOKEN_RE.match(token):
            raise ValueError(f"env version {token!r} is not 12 hex digits")
        return self.join("releases", rid, ENV_DIR, f"{stage}.{token}.env")

    def env_record(self, rid: str, stage: str) -> str:
        """"<token> <build inputs>": the env version the stage's last build of the release made (the one its
        next switch makes live) and a digest of the build settings it ran with ("-" while it runs)."""
        return self.join("releases", rid, ENV_DIR, f"{stage}.built")

    def live_env(self, link: str, stage: str) -> str:
        """The env file of the release live on the stage, through its link."""
        return self.join(link, ENV_DIR, f"{stage}.env")

    def env_file_target(self, link: str, stage: str) -> str:
        """The relative target of shared/<stage>.env: ../sites/current/.deploy-env/prod.env for prod."""
        return posixpath.relpath(self.live_env(link, stage), self.shared)

    @property
    def backups(self) -> str:
        return self.join("db_backup")

    @property
    def deploy(self) -> str:
        return self.join(".deploy")

    @property
    def lock(self) -> str:
        return self.join(".deploy", "lock")

    @property
    def lock_sessions(self) -> str:
        """In the lock: its run's watched processes on this host, "<pid> <start> <boot id>" a line."""
        return self.join(".deploy", "lock", "sessions")

    @property
    def log(self) -> str:
        return self.join(".deploy", "releases.jsonl")

    def artifact(self, rid: str) -> str:
        return self.join(".deploy", "artifacts", f"{rid}.tar.gz")

    def artifact_proof(self, rid: str) -> str:
        """<id>.json beside the archive, written last, once its sha256 matched: the host holds the release."""
        return self.join(".deploy", "artifacts", f"{rid}.json")

    def ready(self, rid: str) -> str:
        return posixpath.join(self.release(rid), READY)

    def release_meta(self, rid: str) -> str:
        return posixpath.join(self.release(rid), RELEASE_META)

    def built_marker(self, stage: str) -> str:
        """The release last built for the stage (its stage-level build: env file, stage dirs, build_command)."""
        return self.join(".deploy", f"built-{stage}")

    def migrated_marker(self, stage: str) -> str:
        """The release last migrated on the stage (for a migrate_command that has no --check)."""
        return self.join(".deploy", f"migrated-{stage}")

    def verified_marker(self, stage: str) -> str:
        """verify's verdict on the stage's release, read by a promotion from that stage."""
        return self.join(".deploy", f"verified-{stage}")

    def venv_complete(self, digest: str) -> str:
        """Written last into a venv: it is whole (one without it is built again from scratch)."""
        return posixpath.join(self.venv(digest), ".deploy-complete")

    @property
    def venvs(self) -> str:
        return self.join(".deploy", "venvs")

    @property
    def incoming(self) -> str:
        """Backups copied here from another backup host for a restore (removed after it)."""
        return self.join(".deploy", "incoming")

    def wheels(self, digest: str) -> str:
        return self.join(".deploy", "wheels", digest)

    def intent(self, stage: str) -> str:
        """A switch under way: written on every host before the first rename, removed after the release log
        records the outcome. Left behind, it tells the next run to finish or undo that switch."""
        return self.join(".deploy", f"intent-{stage}.json")

    def migration(self, stage: str) -> str:
        """The record of the stage's latest migration of its database, on the database's backup host: an
        intent written before the first change, its outcome after the verified "after" backup. An intent
        without an outcome tells the next run to finish that migration (steps/migration/production_migration.py)."""
        return self.join(".deploy", f"migration-{stage}.json")

    def venv(self, digest: str) -> str:
        """The venv of every release whose wheelhouse has this digest (linked into each as .venv)."""
        return self.join(".deploy", "venvs", digest)

    @property
    def rehearsals(self) -> str:
        return self.join(".deploy", "rehearsals")

    def rehearsal(self, rid: str, aside: str = "") -> str:
        """The migration rehearsal report of a release (JSON, 0644); one the guard would not use is kept
        beside it as <id>.<aside>.json (stale, refused)."""
        return self.join(".deploy", "rehearsals", f"{rid}.{aside}.json" if aside else f"{rid}.json")

    def rehearsal_record(self, rid: str) -> str:
        """On the backup host of the database a rehearsal copied: the sha256 of its report, written before
        the report, where the rehearsing stage's hosts cannot rewrite it (steps/migration/rehearsal_guard.py)."""
        return self.join(".deploy", "rehearsals", f"{rid}.record.json")

    def rehearsal_md(self, rid: str) -> str:
        return self.join(".deploy", "rehearsals", f"{rid}.md")

    def programs(self, digest: str) -> str:
        """The host-side programs (tasks/hostside/*.py) of one version of the tool, as files."""
        return self.join(".deploy", "programs", digest)

    def db_marker(self, database: str) -> str:
        return self.join(".deploy", f"db-{database}.json")

    def link(self, link: str) -> str:
        return self.join(link)

    def link_target(self, link: str, rid: str) -> str:
        """The relative target a stage link gets: ../releases/<id> for sites/<stage>."""
        return posixpath.relpath(self.release(rid), posixpath.dirname(self.link(link)))
