"""hostside.script(): a host gets a script file without its header, byte for byte the rest."""
from __future__ import annotations

from pathlib import Path

import pytest

from doit_stages import hostside
from doit_stages.steps import buildout, facts

HOSTSIDE = Path(hostside.__file__).parent
SCRIPTS = sorted(p.name for p in HOSTSIDE.glob("*.sh"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_says_its_shell_and_is_sent_without_its_header(name):
    text = (HOSTSIDE / name).read_text()
    assert text.startswith(("# shellcheck shell=sh\n", "#!/bin/sh\n")) and text.endswith("\n")
    sent = hostside.script(name)
    assert text.endswith(sent) and not sent.startswith("# ")
    assert all(line.startswith("#") for line in text[:len(text) - len(sent)].splitlines())


def test_the_header_ends_at_the_first_line_of_code_or_a_shebang():
    assert facts.FACTS.startswith("link=$1; rel=$2;")
    assert buildout.DISPATCHER.startswith("#!/bin/sh\n# Written by doit-stages")


@pytest.mark.parametrize("name", ["interpreter.py", "sqlite_counts.py", "sqlite_copy.py"])
def test_a_python_program_is_sent_without_its_header_and_compiles(name):
    sent = hostside.script(name)
    assert sent.startswith("import ") and (HOSTSIDE / name).read_text().endswith(sent)
    compile(sent, name, "exec")
