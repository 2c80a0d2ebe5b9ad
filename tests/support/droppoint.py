"""Test hook: Faust drops fetched records before they reach the agent, once.

What faust-streaming 0.15.3 does now and then at a rebalance (streams/patches/order.py): a
record fetched from the broker never reaches the agent's stream (a delivery raced by the
rebalance, or a message fetched in an older generation, which the stream skips and acks), and
the next record of the partition follows with a jump. Imported before the worker starts
(``WorkerProcess(..., preload="tests.support.droppoint")`` with
``SHOPSTREAM_TEST_DROP=<partition>:<first offset>:<end offset>``), it makes the consumer
drop those offsets of the events topic the first time they are fetched; fetched again (a
seek back), they are delivered.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer

_spec = os.environ.get("SHOPSTREAM_TEST_DROP", "")
PARTITION, START, END = (int(x) for x in _spec.split(":")) if _spec else (-1, 0, 0)
dropped: set[int] = set()
_getmany = Consumer.getmany


async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # noqa: ASYNC109
    async for tp, message in _getmany(self, timeout):
        first_time = message.offset not in dropped
        if tp.partition == PARTITION and START <= message.offset < END and first_time:
            if not tp.topic.startswith(self.app.conf.id):  # the events topic, not a changelog
                dropped.add(message.offset)
                print(f"droppoint: dropped {tp.topic}[{tp.partition}]@{message.offset}",
                      flush=True)  # fmt: skip
                continue
        yield tp, message


getmany.__wrapped__ = _getmany  # type: ignore[attr-defined]  # Faust's, for the guard test
Consumer.getmany = getmany  # type: ignore[assignment,method-assign]
