"""tasks/commands.py's words for what it could not read, on plain inputs."""
from __future__ import annotations

from doit_stages.commands import unreachable
from doit_stages.config import Host, Stage
from doit_stages.errors import StepError
from doit_stages.transport import CommandFailed

WEB2 = Host("ssh://deploy@web2:22", "web2", "deploy", 22)
PROD = Stage(name="prod", hosts=(WEB2,), link="sites/current")


def test_an_unreachable_host_is_named_once_with_its_stage_and_ssh_own_words():
    exc = CommandFailed(WEB2, ["sh"], 255, "ssh: connect to host web2 port 22: Connection refused\n")
    assert str(exc).startswith("ssh://deploy@web2:22: cannot reach the host")
    assert unreachable(PROD, WEB2, exc) == ("host ssh://deploy@web2:22 of stage prod is unreachable: ssh: connect "
                                            "to host web2 port 22: Connection refused")
    assert unreachable(PROD, WEB2, StepError("ssh://deploy@web2:22: sites is a file")) == (
        "host ssh://deploy@web2:22 of stage prod: sites is a file")
