"""build = pip's wheelhouse, the pure parts: requirements includes read from the archive (and refused when
they leave it), the digest that keys every cache, the hosts' interpreter (facts), the choice of one
interpreter, pip's configuration said to uv, and a failed build said in one line. Plain inputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from doit_stages.errors import StepError
from doit_stages.steps import facts, wheelhouse
from doit_stages.steps.archive import Release

FIXTURES = Path(__file__).parents[1] / "fixtures"
HOST = {"implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
        "platform_machine": "x86_64", "platform_release": "6.1.0", "platform_system": "Linux",
        "platform_version": "#1 SMP", "python_full_version": "3.11.2", "platform_python_implementation": "CPython",
        "python_version": "3.11", "sys_platform": "linux", "libc": "glibc 2.36"}


def reader(files: dict[str, str]):
    return lambda path: files[path].encode() if path in files else None


def test_includes_are_followed_inside_the_archive_relative_to_the_including_file():
    files = {"requirements.txt": "-r requirements/production.txt\n--constraint=constraints.txt  # pins\n",
             "requirements/production.txt": "Django>=5\n-rbase.txt\n--requirement ../constraints.txt\n",
             "requirements/base.txt": "sqlparse \\\n  ==0.5\n# -r not-a-file.txt\n",
             "constraints.txt": "Django==5.2.19\n"}
    found, local = wheelhouse.requirement_files(reader(files), "requirements.txt")
    assert sorted(found) == sorted(files) and not local
    for line, is_local in (("-e .", True), ("./vendor/lib", True), ("--find-links ./wheels", True),
                           ("-f vendor/wheels", True), ("-f https://example.org/wheels/", False), ("Django", False)):
        _, local = wheelhouse.requirement_files(reader({"r.txt": f"six\n{line}\n"}), "r.txt")
        assert local == is_local, line


@pytest.mark.parametrize("line, said", [
    ("-r ../../etc/passwd", "requirements.txt:2: ../../etc/passwd leaves the archive"),
    ("-c /etc/pip/constraints.txt", "requirements.txt:2: /etc/pip/constraints.txt is outside the archive"),
    ("--requirement=https://example.org/r.txt", "is outside the archive (an absolute path or a URL)"),
    ("-r missing.txt", "requirements.txt:2 includes missing.txt, which is not in the revision's archive"),
])
def test_an_include_that_leaves_the_archive_or_is_missing_is_one_line(line, said):
    with pytest.raises(StepError) as exc:
        wheelhouse.requirement_files(reader({"requirements.txt": f"Django\n{line}\n"}), "requirements.txt")
    assert said in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_requirements_file_names_the_key():
    with pytest.raises(StepError, match="needs requirements/prod.txt in the app's repository .*requirements ="):
        wheelhouse.requirement_files(reader({}), "requirements/prod.txt")


def test_the_digest_covers_the_interpreter_and_every_included_file():
    files = {"requirements.txt": b"-r a.txt\n", "a.txt": b"x\n"}
    one = wheelhouse.wheelhouse_digest("cpython-3.11.2-linux-x86_64", files)
    assert one != wheelhouse.wheelhouse_digest("cpython-3.11.7-linux-x86_64", files)
    assert one != wheelhouse.wheelhouse_digest("cpython-3.11.2-linux-x86_64", {**files, "a.txt": b"y\n"})
    assert one != wheelhouse.wheelhouse_digest("cpython-3.11.2-linux-x86_64", files, "ab" * 32)
    assert one == wheelhouse.wheelhouse_digest("cpython-3.11.2-linux-x86_64", dict(reversed(files.items())))


@pytest.mark.parametrize("text", ["", "python3: not found", '{"python_full_version": "3.11.2"}', "[1, 2]"])
def test_the_interpreter_parser_refuses_what_is_not_a_full_answer(text):
    assert facts.parse_interpreter(text) is None


def test_the_interpreter_parser_on_a_canned_answer():
    env = facts.parse_interpreter("warning: something\n" + json.dumps({**HOST, "extra": 1}) + "\n")
    assert env == HOST
    assert facts.interpreter_key(env) == "cpython-3.11.2-linux-x86_64"
    assert facts.interpreter_text(env) == "CPython 3.11.2 (linux x86_64)"


def test_one_interpreter_for_all_hosts_or_one_line_naming_them():
    here = {**HOST, "python_full_version": "3.11.7", "implementation_version": "3.11.7"}
    assert wheelhouse.choose_interpreter([("web1", HOST), ("web2", HOST)], here) == HOST
    other = {**HOST, "python_full_version": "3.11.4"}
    with pytest.raises(StepError) as exc:
        wheelhouse.choose_interpreter([("web1", HOST), ("web2", other), ("web3", HOST)], here)
    assert "web1, web3: CPython 3.11.2 (linux x86_64); web2: CPython 3.11.4 (linux x86_64)" in str(exc.value)
    newer = {**HOST, "python_full_version": "3.12.1", "python_version": "3.12"}
    with pytest.raises(StepError, match=r"\(web1\) run CPython 3.12.1 .* run doit with a CPython 3.12 on linux x86_64"):
        wheelhouse.choose_interpreter([("web1", newer)], here)
    with pytest.raises(StepError, match="aarch64"):
        wheelhouse.choose_interpreter([("web1", {**HOST, "platform_machine": "aarch64"})], here)


def test_pips_configuration_said_to_uv_env_over_wheel_over_global():
    listing = ("global.index-url='https://pypi.internal/simple'\nglobal.find-links='/opt/wheels'\n"
               "wheel.find-links='/a /b'\n:env:.no-index='1'\nglobal.cert='/x.pem'\n"
               "global.extra-index-url='file:///m/simple file:///n/simple'\n:env:.index-url='https://env/simple'\n")
    assert wheelhouse.uv_args_of(listing) == [
        "--index-strategy", "unsafe-best-match", "--index-url", "https://env/simple",
        "--extra-index-url", "file:///m/simple", "--extra-index-url", "file:///n/simple",
        "--find-links", "/a", "--find-links", "/b", "--no-index"]
    assert wheelhouse.uv_args_of("") == ["--index-strategy", "unsafe-best-match"]


def test_pins_of_the_built_wheels_are_what_the_hosts_install():
    assert wheelhouse.pins_of(["Django-5.2.19-py3-none-any.whl", "oldpy_shim-1.0-py3-none-any.whl",
                               "mysql_connector_python-9.1-cp311-cp311-manylinux_2_28_x86_64.whl"]) == [
        "django==5.2.19", "mysql-connector-python==9.1", "oldpy-shim==1.0"]


def test_the_glibc_a_wheel_needs():
    assert wheelhouse.glibc_needed("a-1-py3-none-any.whl") is None
    assert wheelhouse.glibc_needed("a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") == (2, 17)
    assert wheelhouse.glibc_needed("a-1-cp311-cp311-manylinux_2_38_x86_64.whl") == (2, 38)
    assert wheelhouse.glibc_needed("a-1-cp311-cp311-musllinux_1_2_x86_64.whl") is None


def test_mysqlclient_without_its_headers_is_one_line_naming_it_and_what_is_missing():
    """pip 23.2's real output for `pip wheel mysqlclient==2.2.7` on a machine without the client library."""
    out = (FIXTURES / "pip_mysqlclient_stdout.txt").read_text()
    err = (FIXTURES / "pip_mysqlclient_stderr.txt").read_text()
    msg = wheelhouse.failure_message("requirements.txt", HOST, out, err)
    assert msg.startswith("archive: cannot build a wheel of mysqlclient==2.2.7 on this machine: pkg-config finds "
                          "no MySQL/MariaDB client library")
    assert "default-libmysqlclient-dev" in msg and "PyMySQL" in msg and "\n" not in msg


@pytest.mark.parametrize("err, req, why", [
    ("  × Failed to build `fakeclient @ file:///tmp/x/fakeclient`\n  ├─▶ The build backend returned an error\n"
     "      [stderr]\n      /bin/sh: 1: mysql_config: not found\n", "fakeclient", "mysql_config is not installed here"),
    ("Building wheel for cffi (setup.py): finished with status 'error'\n  c/_cffi_backend.c:15:10: fatal error: "
     "ffi.h: No such file or directory\nERROR: Failed building wheel for cffi\n", "cffi",
     "the C header ffi.h is missing here"),
    ("error: command 'gcc' failed: No such file or directory\nERROR: Failed building wheel for psycopg2\n",
     "psycopg2", "gcc is not installed here"),
])
def test_a_build_failure_names_the_requirement_and_the_missing_thing(err, req, why):
    msg = wheelhouse.failure_message("requirements.txt", HOST, "", err)
    assert msg.startswith(f"archive: cannot build a wheel of {req} on this machine: {why}; "), msg


def test_an_unsatisfiable_requirement_is_one_line_for_the_hosts_python():
    err = ("  × No solution found when resolving dependencies:\n  ╰─▶ Because soupish>=4 needs Python>=3.11.5 and "
           "you require soupish>=4, we can conclude that your requirements are unsatisfiable.\n")
    msg = wheelhouse.failure_message("requirements.txt", HOST, "", err)
    assert msg.startswith("archive: cannot resolve requirements.txt for the hosts' CPython 3.11.2 (linux x86_64): "
                          "Because soupish>=4 needs Python>=3.11.5"), msg


def test_a_release_without_a_python_key_keeps_its_json():
    old = Release("blog-2024-01-01-0000-abcdef012345", "a" * 40, "b" * 64, "d1")
    assert json.loads(old.to_json()) == {"id": old.id, "revision": old.revision, "sha256": old.sha256, "wheels": "d1"}
    new = Release(old.id, old.revision, old.sha256, "d2", "cpython-3.11.2-linux-x86_64")
    assert Release.from_json(new.to_json()) == new and Release.from_json(old.to_json()) == old
