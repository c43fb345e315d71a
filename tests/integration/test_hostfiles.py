"""The host-side programs (tasks/hostside/*.py) shipped to a host as files (steps/hostfiles.py), on the local
transport in a temp deploy_root."""
from __future__ import annotations

from pathlib import Path

from doit_stages import hostside
from doit_stages.config import Host
from doit_stages.layout import Layout
from doit_stages.steps.hostfiles import ship_programs
from doit_stages.transport import LocalTransport


def test_host_side_programs_are_shipped_whole_once(tmp_path):
    t, layout = LocalTransport(Host("local")), Layout(str(tmp_path / "srv"))
    where = ship_programs(t, layout)
    assert where == layout.programs(hostside.digest())
    assert sorted(p.name for p in Path(where).iterdir()) == sorted([*hostside.PROGRAMS, "complete"])
    for name in hostside.PROGRAMS:
        assert Path(where, name).read_text() == hostside.source(name)
    mtime = Path(where, "complete").stat().st_mtime_ns
    assert ship_programs(t, layout) == where and Path(where, "complete").stat().st_mtime_ns == mtime
    # a directory without `complete` (not one a ship left: those are renamed in whole) is replaced
    Path(where, "complete").unlink()
    Path(where, "migrate_runner.py").write_text("half")
    ship_programs(t, layout)
    assert Path(where, "migrate_runner.py").read_text() == hostside.source("migrate_runner.py")
    assert sorted(p.name for p in Path(where).parent.iterdir()) == [Path(where).name]   # no temporary left
