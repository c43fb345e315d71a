"""session.py: a rolling switch's batches, from a stage's batch (a number of hosts or a share)."""
from __future__ import annotations

from pathlib import Path

import pytest

from doit_stages.config import Config, Project, Stage, parse_host
from doit_stages.session import Session

HOSTS3 = tuple(parse_host(f"ssh://deploy@web{i}:22") for i in (1, 2, 3))


@pytest.mark.parametrize("batch, sizes", [
    ("100%", [3]), ("50%", [2, 1]), ("34%", [2, 1]), ("33%", [1, 1, 1]), ("1%", [1, 1, 1]),
    ("1", [1, 1, 1]), ("2", [2, 1]), ("3", [3]), ("10", [3]), ("200%", [3]),
])
def test_batches(batch, sizes):
    stage = Stage(name="prod", hosts=HOSTS3, link="sites/current", batch=batch)
    config = Config(Path("/nonexistent/stages.ini"), Project(name="blog", source=Path("/nonexistent")), {},
                    {"prod": stage})
    batches = Session(config, environ={}, argv=["doit"]).batches(stage)
    assert [len(b) for b in batches] == sizes
    assert [h for b in batches for h in b] == list(HOSTS3)      # every host once, in order


def test_each_role_is_cut_by_its_own_batch_and_the_nth_batches_go_together():
    from doit_stages.config import Role
    web, worker = HOSTS3[:2], (parse_host("ssh://deploy@worker1:22"), parse_host("ssh://deploy@worker2:22"))
    stage = Stage(name="prod", hosts=(*web, *worker, HOSTS3[2]), link="sites/current", batch="1",
                  roles=(Role("app", web, batch="1"), Role("worker", worker, batch="100%"),
                         Role("cron", HOSTS3[2:], batch="1")))
    config = Config(Path("/nonexistent/stages.ini"), Project(name="blog", source=Path("/nonexistent")), {},
                    {"prod": stage})
    batches = Session(config, environ={}, argv=["doit"]).batches(stage)
    assert batches == [[web[0], *worker, HOSTS3[2]], [web[1]]]
