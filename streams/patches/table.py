"""A profile table whose recovery is right when a user moved to another partition.

Faust keeps one in-memory dict for all the changelog partitions a worker recovers, and
applies their records in whatever order the partitions are fetched. A key normally lives
in one partition, so the order does not matter. After ``shopstream repartition`` a user
moved: their newest envelope is in the new partition, and the old one holds their previous
envelope followed by a tombstone. Recovered in the order new-then-old, the tombstone would
delete the user (and the memory store would then drop the key as "not ours").

So a changelog record is applied only if it is not older than what is stored for the key:

* a value replaces the stored one unless the stored envelope was written under a newer
  partition layout (its ``g``, set by ``shopstream repartition``; 0 before any);
* a tombstone deletes only an envelope that lives in the tombstone's partition (``pt``).

Values are read with orjson only where a key is already stored (during recovery).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
import orjson


def layout_of(raw: Any) -> tuple[int, int]:
    """``(layout, partition)`` of a stored envelope (``(0, -1)`` if unreadable).

    >>> layout_of(b'{"g": 4, "pt": 3, "p": {}}'), layout_of(b'{"pt": 1}'), layout_of(b"x")
    ((4, 3), (0, 1), (0, -1))
    """
    try:
        env = orjson.loads(raw)
        return int(env.get("g", 0)), int(env.get("pt", -1))
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return 0, -1


def keep(stored: Any, event: Any) -> bool:
    """Whether the changelog ``event`` may be applied over the ``stored`` value."""
    if stored is None:
        return True
    layout, partition = layout_of(stored)
    value = event.message.value
    if value is None:  # a tombstone: only for an envelope that lives in its partition
        return bool(partition == event.message.partition)
    return layout_of(value)[0] >= layout


class Table(faust.Table[Any, Any]):
    """Faust's table with :func:`keep` applied to changelog records during recovery."""

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        data = self.data
        pending: dict[Any, Any] = {}  # what the kept records of this batch leave, per key
        kept = []
        for event in batch:
            key = self._to_key(event.key)
            stored = pending[key] if key in pending else data.get(key)
            if keep(stored, event):
                kept.append(event)
                pending[key] = event.message.value
        super().apply_changelog_batch(kept)
