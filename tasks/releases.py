"""Which release each stage gets in this run, found once and remembered for the next node.

A first stage gets the source revision's archive (built here); a promoted stage gets exactly the release
live on its promote_from stage, verified there, never rebuilt from source.
"""
from __future__ import annotations

import threading

from .errors import StepError
from .layout import release_id
from .session import Session
from .steps.archive import Release, local_release, make_archive
from .steps.buildout import configs_of
from .steps.facts import interpreter_key
from .steps.source import Revision, dirty_note, resolve_revision
from .steps.upload import fetch_release
from .steps.verify import source_of
from .steps.wheelhouse import choose_interpreter, local_interpreter, read_interpreter

WHEELHOUSE_BUILDS = ("pip", "buildout")


class Releases:
    def __init__(self, session: Session):
        self.session = session
        self._revision: Revision | None = None
        self._python: dict[str, str] | None = None
        self._by_stage: dict[str, Release] = {}
        self._mutex = threading.Lock()

    def revision(self) -> Revision:
        if self._revision is None:
            config = self.session.config
            wanted = self.session.environ.get("DEPLOY_REVISION") or config.project.revision
            self._revision = resolve_revision(config.project, wanted)
            note = dirty_note(config.project, self._revision)
            if note:
                print(note, flush=True)
        return self._revision

    def python(self) -> dict[str, str] | None:
        """The interpreter the source archive's wheelhouse is for (build = pip | buildout): the python3 of
        every host of the stages that take the archive (the others get it by promotion, checked then),
        read once, on the connections the next nodes use; None for the other builds."""
        config = self.session.config
        if config.project.build not in WHEELHOUSE_BUILDS:
            return None
        if self._python is None:
            hosts = list(dict.fromkeys(h for st in config.stages.values() if not st.promote_from for h in st.hosts))
            found = self.session.hosts.each(hosts, lambda t: read_interpreter(t, config.project.build),
                                            "archive: asking the hosts for their python3", wide=True)
            self._python = choose_interpreter(zip(hosts, found), local_interpreter())
        return self._python

    def source_release_id(self) -> str:
        rev = self.revision()
        return release_id(self.session.config.project.name, rev.time, rev.commit)

    def built_release(self) -> Release | None:
        """The source revision's archive built here before, with a wheelhouse for the hosts' python3 (a
        changed interpreter is a new wheelhouse: not up to date)."""
        release = local_release(self.session.config.build_dir, self.source_release_id())
        python = self.python() if release else None
        if release and python and release.python != interpreter_key(python):
            return None
        return release

    def make_archive(self) -> Release:
        config = self.session.config
        release = make_archive(config.project, self.revision(), config.build_dir, configs_of(config), self.python())
        self._by_stage.clear()
        return release

    def known_id(self, stage) -> str | None:
        """The release `stage` is getting in this run, if this run found it already (asks nothing)."""
        with self._mutex:
            found = self._by_stage.get(stage.name)
        return found.id if found else None

    def of(self, stage) -> Release:
        """What `stage` is getting in this run."""
        with self._mutex:
            if stage.name not in self._by_stage:
                self._by_stage[stage.name] = self._find(stage)
            return self._by_stage[stage.name]

    def known(self, stage) -> Release | None:
        """What `stage` is getting, if this run found it already (never builds or asks anything)."""
        with self._mutex:
            return self._by_stage.get(stage.name)

    def _find(self, stage) -> Release:
        if not stage.promote_from:
            return self.built_release() or self.make_archive()
        s, config = self.session, self.session.config
        src = config.stages[stage.promote_from]
        rid, states = source_of(s, src, f"promote:{stage.name}")
        for host, state in zip(src.hosts, states):
            if not state or state.get("release") != rid or not state.get("ok"):
                raise StepError(f"promote:{stage.name}: release {rid} has not passed verify:{src.name} on "
                                f"{host}; run doit verify:{src.name} (and fix what it reports) first")
        return local_release(config.build_dir, rid) or s.hosts.one(
            src.hosts[0], lambda t: fetch_release(t, s.layout, rid, config.build_dir))
