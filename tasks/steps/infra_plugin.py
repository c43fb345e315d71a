"""The fixtures of every stage check, given to pytest by `verify:<stage>` (steps/verify.py runs pytest in the
doit process), so that the built-in checks (infra-tests/) and a project's own (`[project] infra_tests =`)
get the same ones: host (testinfra, one per host of the stage), stage, release, layout and config.

`host` is a real testinfra Host whose backend sends each command over the run's own session with that host
(the transport every node used: no new login, no second ssh process); a command verify already ran on
every host at once (Stage.prefetched: the facts script, the database check) is answered with that run's
result the first time a check asks for it, so the hosts are read in parallel, not one after another."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.host import Host as TestinfraHost

from ..config import Config, Host, Stage
from ..junit import Case
from ..layout import Layout

CHECKS = pytest.StashKey["StageChecks"]()


class SessionBackend(BaseBackend):
    """testinfra's backend over a run's executor: `run(command)` is `sh -c command` on the host's session."""
    NAME = "doit-stages"

    def __init__(self, host: Host, call, prefetched: dict[str, tuple[int, str, str]] | None = None):
        super().__init__(host.spec)
        self.host_ = host
        self._call = call                      # (host, argv) -> (code, stdout, stderr)
        self._prefetched = dict(prefetched or {})
        self._mutex = threading.Lock()
        self._encoding = "utf-8"               # the hosts' tools speak UTF-8: never ask with a remote python3

    def get_pytest_id(self) -> str:
        return self.host_.spec

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        command = self.get_command(command, *args)
        with self._mutex:
            answer = self._prefetched.pop(command, None)   # once: asked again, the host is asked again
        code, out, err = answer if answer is not None else self._call(self.host_, ["sh", "-c", command])
        return self.result(code, self.encode(command), out, err)


@dataclass
class StageChecks:
    """The plugin object of one verify run: which stage, release and hosts, and how to reach them."""
    config: Config
    stage: Stage
    release: str
    hosts: list[Host]
    call: Any                                             # (host, argv) -> (code, stdout, stderr)
    prefetched: dict[Host, dict[str, tuple[int, str, str]]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)   # (check's id, why it failed), in order
    cases: dict[str, Case] = field(default_factory=dict)   # every check's outcome, for DEPLOY_JUNIT_XML

    def pytest_configure(self, config) -> None:
        config.stash[CHECKS] = self
        self._testinfra_hosts = []
        for h in self.hosts:
            backend = SessionBackend(h, self.call, self.prefetched.get(h))
            host = TestinfraHost(backend)
            backend.set_host(host)
            self._testinfra_hosts.append(host)

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed:
            self.failures.append((check_id(report.nodeid), failure_text(report)))
        self._note(check_id(report.nodeid), report)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.failures.append((check_id(report.nodeid) or "collecting the checks", failure_text(report)))
            self._note(check_id(report.nodeid) or "collecting the checks", report)

    def _note(self, check: str, report) -> None:
        """The check's outcome over its phases: its call's, unless its setup or teardown failed."""
        case = self.cases.setdefault(check, Case(check))
        case.seconds += getattr(report, "duration", 0.0) or 0.0
        when = getattr(report, "when", "collect")
        if report.failed and case.outcome == "passed":
            case.outcome = "failed" if when == "call" else "error"
            case.message, case.text = failure_text(report), report.longreprtext
        elif report.skipped and case.outcome == "passed":
            case.outcome = "skipped"
            case.message = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "skipped"

    def pytest_generate_tests(self, metafunc) -> None:
        if "_testinfra_host" in metafunc.fixturenames:
            metafunc.parametrize("_testinfra_host", self._testinfra_hosts, scope="module", indirect=True,
                                 ids=[h.spec for h in self.hosts])


def check_id(nodeid: str) -> str:
    """`test_stage.py::test_env_file_is_private[ssh://deploy@web1]`: the file's name, not its path (the
    built-in checks live in the package, far from the project's rootdir)."""
    path, sep, rest = nodeid.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest


def failure_text(report) -> str:
    """What a failed check says: its assertion (message and pytest's comparison), or the exception's last
    line, with where it was raised; for a check that could not be collected, the error's last lines."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        where = f" ({crash.path.rsplit('/', 1)[-1]}:{crash.lineno})" if crash.path else ""
        return crash.message.strip() + where
    lines = [ln for ln in str(report.longrepr).splitlines() if ln.strip()]
    return "\n".join(lines[-3:]) or "failed"


@pytest.fixture(scope="module")
def _testinfra_host(request):
    return request.param


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """A testinfra Host (host.file, host.run, host.socket, ...), one per host of the stage."""
    return _testinfra_host


@pytest.fixture(scope="session")
def config(request) -> Config:
    """The loaded stages.ini (doit_stages.config.Config)."""
    return request.config.stash[CHECKS].config


@pytest.fixture(scope="session")
def stage(request) -> Stage:
    return request.config.stash[CHECKS].stage


@pytest.fixture(scope="session")
def release(request) -> str:
    """The id of the release the stage's link points at on the hosts checked."""
    return request.config.stash[CHECKS].release


@pytest.fixture(scope="session")
def layout(config) -> Layout:
    """Every path on a host: layout.release(release), layout.link(stage.link), layout.env_file(stage.name)
    (a symlink to the live release's own env file, layout.release_env(release, stage.name))."""
    return Layout(config.project.deploy_root)
