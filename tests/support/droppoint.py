"""Test hook: Faust drops fetched records before they reach the agent, once.

What faust-streaming 0.15.3 does now and then at a rebalance (streams/patches/order.py): a
record fetched from the broker never reaches the agent's stream (a delivery raced by the
rebalance, or a message fetched in an older generation, which the stream skips and acks), and
the next record of the partition follows with a jump. Imported before the worker starts
(``WorkerProcess(..., preload="tests.support.droppoint")`` with
``SHOPSTREAM_TEST_DROP=<partition>:<first offset>:<end offset>``), it makes the consumer
drop those offsets of the events topic the first time they are fetched; fetched again (a
seek back), they are delivered. Both delivery paths: one Faust message per record
(``Consumer.getmany``) and the batch hand-off's fetch messages
(``HandoffConsumer.fetch_messages``, streams/patches/handoff.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer

from streams.patches.handoff import HandoffConsumer

_spec = os.environ.get("SHOPSTREAM_TEST_DROP", "")
PARTITION, START, END = (int(x) for x in _spec.split(":")) if _spec else (-1, 0, 0)
dropped: set[int] = set()
_getmany = Consumer.getmany


def drops(consumer: Any, tp: Any, offset: int) -> bool:
    """Whether this fetch of ``tp@offset`` is dropped (the first one in the range)."""
    first_time = offset not in dropped
    if tp.partition == PARTITION and START <= offset < END and first_time:
        if not tp.topic.startswith(consumer.app.conf.id):  # the events topic, not a changelog
            dropped.add(offset)
            print(f"droppoint: dropped {tp.topic}[{tp.partition}]@{offset}", flush=True)
            return True
    return False


async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # noqa: ASYNC109
    async for tp, message in _getmany(self, timeout):
        if not drops(self, tp, message.offset):
            yield tp, message


_fetch_messages = HandoffConsumer.fetch_messages


def fetch_messages(self: Any, tp: Any, records: Any) -> Any:
    return _fetch_messages(self, tp, [r for r in records if not drops(self, tp, r.offset)])


getmany.__wrapped__ = _getmany  # type: ignore[attr-defined]  # Faust's, for the guard test
Consumer.getmany = getmany  # type: ignore[assignment,method-assign]
HandoffConsumer.fetch_messages = fetch_messages  # type: ignore[method-assign]
