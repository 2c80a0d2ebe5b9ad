"""Producing a batch's records per (topic, partition) in one aiokafka batch each.

Faust's ``Topic.send`` costs ~70 µs per record (a ``Message``, a ``FutureMessage``, sensors,
callbacks, then aiokafka's ``send``), and the table's ``send_changelog`` goes through
``send_soon`` and Faust's ``ProducerBuffer`` (a background task, 100-message back-pressure).
:func:`send_batches` hands the same records to the app's aiokafka producer directly: records
are grouped per (topic, partition) in their order, each group is one
``create_batch``/``send_batch``, and the caller gets one delivery future per batch.

Each batch is closed before it is handed over, so the producer sends it at once. aiokafka
lets an open batch take more records from ``send`` and holds it for the producer's linger
(``SHOPSTREAM_PRODUCER_LINGER_MS``) — and ``flush`` does not cut that short. The worker
awaits its outputs and then flushes its changelog in every batch, so open batches cost two
lingers of idle time per batch (5.6 ms against 0.4 ms per delivery with a 5 ms linger on
this box: docs/performance.md "Eighth round: sends that waited the linger").

What does not change:

* the bytes: key, value and headers as given; the partition of a record without one is
  chosen by the producer's own partitioner (murmur2 of the key, as ``Topic.send``), the
  timestamp is the producer's clock at append (as ``Topic.send`` without a timestamp);
* the order within a partition (Kafka's only order), also after records queued earlier in
  Faust's ``ProducerBuffer`` (a tombstone of ``shopstream forget``): the buffer is flushed
  into the producer first;
* the commit: Faust flushes the aiokafka producer before it commits offsets
  (``Consumer._commit_offsets`` → ``producer.flush()``), and a batch handed over by
  ``send_batch`` is in the producer's accumulator, so it is delivered before any offset of
  the records that produced it is committed.

Relies on faust-streaming 0.15's aiokafka driver (``Producer._ensure_producer``,
``Producer.buffer``) and on aiokafka's ``create_batch``/``send_batch``, ``_partition`` and
``client._wait_on_metadata`` (``tests/unit/patches/test_produce.py`` checks they are there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

#: One record: (topic, partition or ``None`` for the key's partition, key, value, headers).
Outgoing = tuple[str, int | None, bytes | None, bytes | None, list[tuple[str, bytes]] | None]
#: One handed-over batch: its delivery, its topic and partition, and its record count.
Sent = tuple["asyncio.Future[Any]", str, int, int]


async def send_batches(app: Any, records: Iterable[Outgoing]) -> list[Sent]:
    """Hand ``records`` to ``app``'s aiokafka producer, one batch per (topic, partition).

    Returns one :data:`Sent` per batch (a group larger than the producer's batch size is
    several batches); await the futures to know they were delivered.
    """
    groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Any]]] = {}
    producer = app.producer._ensure_producer()
    known: set[str] = set()
    for topic, partition, key, value, headers in records:
        if partition is None:
            if topic not in known:
                await producer.client._wait_on_metadata(topic)
                known.add(topic)
            partition = producer._partition(topic, None, key, value, key, value)
        groups.setdefault((topic, partition), []).append((key, value, headers or []))
    if not groups:
        return []
    buffer = app.producer.buffer
    if buffer.size:  # records queued by send_soon (tombstones) go first
        await buffer.flush()
    sent: list[Sent] = []
    for (topic, partition), group in groups.items():
        batch, count = producer.create_batch(), 0
        for key, value, headers in group:
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                # full: hand it over, start the next (a first record always fits)
                batch.close()
                fut = await producer.send_batch(batch, topic, partition=partition)
                sent.append((fut, topic, partition, count))
                batch, count = producer.create_batch(), 0
                batch.append(timestamp=None, key=key, value=value, headers=headers)
            count += 1
        batch.close()
        fut = await producer.send_batch(batch, topic, partition=partition)
        sent.append((fut, topic, partition, count))
    return sent
