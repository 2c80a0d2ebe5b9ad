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

import logging
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import faust
import orjson

from streams.patches.produce import send_batches

log = logging.getLogger(__name__)


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
    """Faust's table with :func:`keep` applied to changelog records during recovery, and
    changelog records sent in batches (:meth:`send_changelog_batch`)."""

    async def send_changelog_batch(self, records: Sequence[tuple[int, str, bytes]]) -> None:
        """``(partition, key, value)`` records to the changelog, one aiokafka batch per
        partition (:func:`streams.patches.produce.send_batches`) instead of one
        ``send_changelog`` (``send_soon``) each. The same bytes (``str`` keys as Faust's JSON
        codec writes them: ``orjson.dumps``), and, as ``send_changelog``'s callback does, the
        store learns the last persisted offset once a batch is delivered (RocksDB keeps it).
        Faust flushes the producer before it commits offsets, as before."""
        if self.app.in_transaction:  # exactly-once: offsets persisted on commit, Faust's way
            for partition, key, value in records:
                self.send_changelog(partition, key, value)
            return
        topic = self.changelog_topic.get_topic_name()
        out = [(topic, p, orjson.dumps(k), v, None) for p, k, v in records]
        for delivery, _, _, count in await send_batches(self.app, out):
            delivery.add_done_callback(partial(self._on_batch_sent, count))

    def _on_batch_sent(self, count: int, delivery: Any) -> None:
        if delivery.cancelled():
            return
        exc = delivery.exception()
        if exc is not None:  # as a failed send_changelog: logged, the commit is Faust's
            log.error("changelog batch of %d not delivered: %r", count, exc)
            return
        meta = delivery.result()
        self.data.set_persisted_offset(meta.topic_partition, meta.offset + count - 1)

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
