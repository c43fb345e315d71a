"""verify: the built-in infra-tests/ and the project's own checks ([project] infra_tests =), testinfra, run
against a stage's hosts by pytest inside the doit process, over the run's own host sessions (no second
interpreter, no new login), each host checked against the release its own link points at (hosts may
differ after a rollout with max_fail > 0); the verdict is recorded on every host, for a promotion from the
stage to read."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sys
from pathlib import Path

from .. import junit
from ..config import Config, Stage
from ..errors import StepError
from ..junit import Case, Suite
from ..layout import Layout
from ..runtime.common import json_or_none, last_line
from ..transport import Cmd, CommandFailed, Transport
from .environment import app_command
from .facts import facts_argv
from .links import agreed_release, link_argv, read_link, release_of, stage_releases, target_of
from .migration.migrate import check_argv


def verify_stage(session, stage: Stage) -> str:
    what = f"verify:{stage.name}"
    session.lock(stage.hosts, what)  # never records a verdict on a switch that another run is undoing
    groups: dict[str, list] = {}
    for host, rid in zip(stage.hosts, stage_releases(session, stage, what)):
        if rid is None:
            raise StepError(f"{what}: {host} has no {stage.link}; deploy or promote {stage.name} first")
        groups.setdefault(rid, []).append(host)
    failures, summaries = [], []
    for rid, hosts in groups.items():
        ok, output, failed, cases = run_infra_tests(session, stage, rid, hosts)
        # the command's last node, no after_verify hook to run: the host's lock is released with the record
        # (Session.let_go_with)
        last = session.last_node == what and len(groups) == 1 and not stage.has_hook("after_verify")
        session.hosts.each(hosts, lambda t, rid=rid, ok=ok: record_verify(
            t, session.layout, stage.name, rid, ok, session.let_go_with if last else None),
                           f"{what}: recording the result", wide=True)
        write_junit(session, Suite(f"{what} release {rid}", cases or pytest_error(ok, output)))
        summaries.append(f"{rid}: {last_line(output)}")
        if not ok:
            print(failure_report(what, rid, failed, output), flush=True)
            failures.append(f"{rid}: " + (failure_line(failed) or summaries[-1]))
    if failures:
        raise StepError(f"{what}: infra-tests failed for " + " / ".join(failures))
    return "; ".join(summaries)


def write_junit(session, suite: Suite) -> None:
    """DEPLOY_JUNIT_XML: every verify of this run so far, the file rewritten whole (tmp + rename)."""
    session.verify_suites.append(suite)
    path = session.outputs.get("DEPLOY_JUNIT_XML")
    if path is None:
        return
    try:
        junit.write(path, session.verify_suites)
    except OSError as exc:
        raise StepError(f"DEPLOY_JUNIT_XML={path}: not written: {exc.strerror or exc}") from None


def pytest_error(ok: bool, output: str) -> list[Case]:
    """No check ran: pytest itself failed (a usage error, no checks found); its last lines as one case."""
    if ok:
        return []
    lines = output.strip().splitlines()
    return [Case("pytest", "error", message=lines[-1] if lines else "pytest failed", text="\n".join(lines[-20:]))]


def failure_report(what: str, rid: str, failed: list[tuple[str, str]], output: str) -> str:
    """Each failed check with its whole assertion text (pytest's comparison too), indented under its id;
    without any (pytest itself failed), pytest's own last lines."""
    if not failed:
        return "\n".join(f"   {ln}" for ln in output.strip().splitlines()[-10:])
    lines = [f"   {what}: {len(failed)} check(s) failed on {rid}:"]
    for check, text in failed:
        lines.append(f"   FAILED {check}")
        lines += [f"       {ln}" for ln in text.splitlines()]
    return "\n".join(lines)


def failure_line(failed: list[tuple[str, str]], most: int = 5) -> str:
    """`<id>: <the assertion's first line>; ...` for the one-line error."""
    said = "; ".join(f"{check}: {text.splitlines()[0] if text else 'failed'}" for check, text in failed[:most])
    return said + (f"; and {len(failed) - most} more (above)" if len(failed) > most else "")


def builtin_checks() -> Path:
    """The built-in checks: installed inside the package (doit_stages/infra_tests), or infra-tests/ at the
    top of a checkout (an editable install runs the package from tasks/)."""
    here = Path(__file__).resolve().parents[1]
    installed = here / "infra_tests"
    return installed if installed.is_dir() else here.parent / "infra-tests"


def database_check_command(layout: Layout, config: Config, stage: Stage, release: str) -> str | None:
    """The pending-migrations check as the built-in checks send it; None when the stage has none."""
    check = check_argv(config.project.migrate_argv) if stage.database else None
    return None if check is None else shlex.join(app_command(layout, stage.name, release, check, live=True))


def pytest_args(config: Config) -> list[str]:
    """pytest on the built-in checks and the project's own, isolated from the project's pytest setup: no
    plugin autoloading (a pytest-django in the same venv would set Django up), no ini file, no addopts;
    only our fixtures (infra_plugin: testinfra hosts over the run's sessions)."""
    dirs = [str(builtin_checks())] + ([str(config.project.infra_tests)] if config.project.infra_tests else [])
    return ["-q", "-c", os.devnull, "--rootdir", str(config.workdir), "--capture=sys", "-p", "no:cacheprovider",
            "-p", "no:faulthandler", "-p", "no:pastebin", "-p", "no:junitxml", "-p", "no:doctest",
            "-p", "no:legacypath", "--no-header", *dirs]


def run_infra_tests(session, stage: Stage, release: str,
                    hosts) -> tuple[bool, str, list[tuple[str, str]], list[Case]]:
    """pytest in this process (no second interpreter), its testinfra hosts riding on the run's own sessions.
    The commands every host answers (the facts, the database check) are sent to all hosts at once first.
    Returns (passed, pytest's output, [(failed check's id, its assertion text)], every check's outcome)."""
    import pytest  # only runs that verify pay for pytest's import

    from . import infra_plugin

    def call(host, argv):
        return session.hosts.one(host, lambda t: t.call(argv))
    checks = infra_plugin.StageChecks(session.config, stage, release, list(hosts), call,
                                      prefetch(session, stage, release, hosts))
    out = io.StringIO()
    with isolated(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(pytest_args(session.config), plugins=[infra_plugin, checks])
    if code == pytest.ExitCode.INTERRUPTED:   # Ctrl-C: no verdict to record, the run stops
        raise KeyboardInterrupt
    return code == 0, out.getvalue(), checks.failures, list(checks.cases.values())


def prefetch(session, stage: Stage, release: str, hosts) -> dict:
    """{host: {command: (code, stdout, stderr)}}: what every host is asked by the built-in checks, asked of
    all hosts at once (the facts script as its argv: the session's shell runs it itself, no `sh` started).
    A host that did not answer is left out: its checks ask it again, and fail there if it is gone."""
    layout, config = session.layout, session.config
    facts = facts_argv(layout, config, stage, release)
    wanted = {shlex.join(facts): facts}
    check = database_check_command(layout, config, stage, release)
    if check:
        wanted[check] = ["sh", "-c", check]
    # (an answer kept since the run's last command to the host is taken: facts sent ahead with the switch's
    # last command, or with the checks' reads: Transport.call_kept)
    answers = session.hosts.outcomes(list(hosts), lambda t: {c: t.call_kept(argv) for c, argv in wanted.items()},
                                     wide=True)
    return {h: a for h, a in zip(hosts, answers) if isinstance(a, dict)}


# the environment pytest reads while the checks run: no plugin autoloading, no options of the user's own
ISOLATED_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTEST_ADDOPTS": None, "PYTEST_PLUGINS": None}


@contextlib.contextmanager
def isolated():
    """pytest's environment as ISOLATED_ENV says while the checks run; after them, that environment and
    sys.path as they were (pytest puts the checks' directories first: they are not the tool's)."""
    saved_path, saved_env = list(sys.path), {k: os.environ.get(k) for k in ISOLATED_ENV}
    _set_env(ISOLATED_ENV)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        _set_env(saved_env)


def _set_env(values: dict[str, str | None]) -> None:
    """os.environ[key] = value, or no such key for None."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# $1 marker file, $2 its new content (one line, no secret): written (tmp + rename) only when it differs
RECORD = ('{ IFS= read -r old < "$1"; } 2>/dev/null; [ "$old" = "$2" ] && exit 0; [ -d "${1%/*}" ] || '
          'mkdir -p "${1%/*}"; if [ -e "$1.tmp" ] || [ -L "$1.tmp" ]; then rm -f -- "$1.tmp"; fi; '
          '(umask 133; printf \'%s\\n\' "$2" > "$1.tmp") && mv -f "$1.tmp" "$1"')


def record_verify(t: Transport, layout: Layout, stage: str, release: str, ok: bool, send=None) -> None:
    """What verify found, for a promotion to check; written only when it changes (a re-run writes nothing).
    send: how the command is sent (Session.let_go_with: the lock released with it), else t.call."""
    data = json.dumps({"release": release, "ok": ok}, sort_keys=True)
    argv = ["sh", "-c", RECORD, "sh", layout.verified_marker(stage), data]
    code, _, err = send(t, argv) if send is not None else t.call(argv)
    if code != 0:
        raise CommandFailed(t.host, argv, code, err)


def verify_argv(layout: Layout, stage: str) -> list[str]:
    """What read_verify asks a host (a read sent ahead: nodes.check_reads)."""
    return ["cat", "--", layout.verified_marker(stage)]


def read_verify(t: Transport, layout: Layout, stage: str) -> dict | None:
    return verdict_of(t.call_kept(verify_argv(layout, stage)))


def verdict_of(answer: tuple[int, str, str]) -> dict | None:
    """verify_argv's answer -> the recorded verdict (None: there is none)."""
    code, out, _ = answer
    return json_or_none(out) if code == 0 else None


def source_of(session, src: Stage, what: str) -> tuple[str, list[dict | None]]:
    """What a promotion from stage src takes: the release its hosts run (they must agree) and each host's
    verify record, both read in one exchange a host (or taken from what the run read there already)."""
    layout = session.layout

    def one(t: Transport):
        if t.held or session.known_links.get(t.host, src.link)[0]:   # answers kept from the lock's take
            return read_link(t, layout, src.link, session.known_links), read_verify(t, layout, src.name)
        link, record = t.batch([Cmd(link_argv(layout, src.link)), Cmd(verify_argv(layout, src.name))])
        session.known_links.remember(t.host, src.link, target_of(link))
        return target_of(link), verdict_of(record)
    found = session.hosts.each(src.hosts, one, f"{what}: reading {src.link}", wide=True)
    return agreed_release(src, [release_of(x) for x, _ in found], what), [v for _, v in found]
