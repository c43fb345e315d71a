"""steps/build.py's pure parts on plain inputs: the line that names the shared files missing before a run
writes anything (the check on real hosts: tests/integration/test_promote.py)."""
from __future__ import annotations

from doit_stages.layout import Layout
from doit_stages.steps.build import shared_files_problem

W1, W2 = "ssh://deploy@web1:22", "ssh://deploy@web2:22"


def test_nothing_missing_is_no_problem():
    assert shared_files_problem("upload:prod", Layout("/srv/blog"), {W1: [], W2: []}) is None


def test_one_line_names_the_stage_the_hosts_and_each_file():
    line = shared_files_problem("upload:prod", Layout("/srv/blog"), {W1: ["local.py"], W2: ["local.py", "k.pem"]})
    assert "\n" not in line and line.startswith("upload:prod: ")
    assert f"/srv/blog/shared/local.py is missing on {W1}, {W2}" in line
    assert f"/srv/blog/shared/k.pem is missing on {W2}" in line
    assert "shared_files" in line and line.endswith("nothing was changed")
