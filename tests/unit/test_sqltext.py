"""tasks/engines/sqltext.py: SQL text split into statements outside quotes and comments."""
from __future__ import annotations

from doit_stages.engines.sqltext import split_statements


def test_statements_split_outside_quotes():
    assert split_statements("-- c\nBEGIN;\nUPDATE `t` SET a = 'x;y';\nDROP TABLE `u`;\nCOMMIT;") == \
        ["UPDATE `t` SET a = 'x;y'", "DROP TABLE `u`"]
