"""The deploying machine's own commands (localcmd): the argv plumbum is given is the argv the tool built,
word for word (no shell string), its program found on the PATH as it is now; a failure's one line. Nothing
is started here (tests/integration/test_archive.py runs git and hg through it)."""
from __future__ import annotations

import os

from doit_stages import localcmd


def test_the_argv_reaches_plumbum_word_for_word(tmp_path, monkeypatch):
    prog = tmp_path / "tool"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/nowhere")   # the PATH of now, not plumbum's copy
    words = ["-C", "a dir", "x; rm -rf /", "$HOME", "'q'", ""]
    assert localcmd.command(["tool", *words]).formulate() == [str(prog), *words]


def test_a_program_not_on_the_path_is_no_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert localcmd.command(["git", "status"]) is None


def test_a_failure_says_its_last_line_of_stderr_else_of_stdout():
    assert localcmd.Done(1, b"out\n", b"warning: x\n\nfatal: bad revision 'zz'\n\n").last_line() \
        == "fatal: bad revision 'zz'"
    assert localcmd.Done(1, b"first\n  second  \n", b"").last_line() == "second"
    assert localcmd.Done(1, b"", b"").last_line() == "?"
    assert localcmd.Done(0, b"caf\xc3\xa9 \xff\n", b"").stdout == "café \ufffd\n"
