"""The profile table's recovery rule: a moved user survives any order of the partitions."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import orjson

from streams.patches.table import keep


def record(partition: int, value: dict[str, Any] | None) -> Any:
    raw = None if value is None else orjson.dumps(value)
    return SimpleNamespace(message=SimpleNamespace(partition=partition, value=raw))


def recover(order: list[list[Any]]) -> bytes | None:
    stored: bytes | None = None
    for batch in order:
        for event in batch:
            if keep(stored, event):
                stored = event.message.value
    return stored


def test_a_moved_user_is_recovered_whatever_the_order_of_the_partitions() -> None:
    """``shopstream repartition`` left: partition 0 = [old envelope, tombstone], partition
    2 = [the moved envelope (layout 3), a later one written by a worker]."""
    old = [record(0, {"pt": 0, "n": 1}), record(0, None)]
    new = [record(2, {"pt": 2, "g": 3, "n": 1}), record(2, {"pt": 2, "g": 3, "n": 2})]
    for order in itertools.permutations([old, new]):
        assert orjson.loads(recover(list(order)) or b"null") == {"pt": 2, "g": 3, "n": 2}


def test_an_erasure_tombstone_still_deletes() -> None:
    assert recover([[record(1, {"pt": 1}), record(1, None)]]) is None
