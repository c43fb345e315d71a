"""No value from stages.ini or the environment reaches a command line where the program would read it as an
option: each argv builder, with hostile values, on plain inputs (no host, no repository touched)."""
from __future__ import annotations

import pytest

from doit_stages.config import Host
from doit_stages.errors import StepError
from doit_stages.steps.source import revision_args
from doit_stages.transport import CommandFailed, SSHTransport, destination_problem


@pytest.mark.parametrize("scm", ["git", "hg"])
@pytest.mark.parametrize("wanted", ["--upload-pack=touch x", "-r", "-", "main\n--exec=x"])
def test_a_revision_that_would_be_an_option_is_refused(scm, wanted):
    with pytest.raises(StepError, match="revision"):
        revision_args(scm, wanted)


def test_git_gets_the_revision_before_a_double_dash():
    args = revision_args("git", "v1.0")
    assert args[-2:] == ["v1.0^{commit}", "--"] and not args[-2].startswith("-")
    assert revision_args("git", "")[-2] == "HEAD^{commit}"


def test_hg_gets_the_revision_as_the_value_of_r():
    args = revision_args("hg", "default")
    assert args[args.index("-r") + 1] == "default"
    assert revision_args("hg", "")[args.index("-r") + 1] == "."


@pytest.mark.parametrize("hostname, user", [("-oProxyCommand=touch /tmp/dst-pwned", "deploy"),
                                            ("web1", "-oProxyCommand=touch /tmp/dst-pwned"),
                                            ("web1", "-lroot"), ("web 1", None)])
def test_ssh_is_never_started_for_a_destination_it_could_read_as_an_option(tmp_path, hostname, user):
    host = Host("ssh://made-up", hostname, user, 22)
    assert destination_problem(host)
    with pytest.raises(CommandFailed, match="refused"):
        SSHTransport(host)


def test_ordinary_destinations_pass():
    assert destination_problem(Host("ssh://deploy@web1:22", "web1", "deploy", 22)) is None
    assert destination_problem(Host("ssh://[::1]", "::1", None, None)) is None
