"""Test hook: kill the worker between a changelog write and the next output it publishes.

Issue 15, hole 2: envelopes (the per-user fence) used to be written to the changelog before
the batch's outputs were published, so a crash in between lost the outputs for good. This
module, imported before the worker starts (``WorkerProcess(..., crash_after_changelog=N)``
sets ``SHOPSTREAM_TEST_CRASH_AFTER_CHANGELOG=N``), patches Faust so that after the N-th
changelog write the next send to any other topic first flushes the producer (every
changelog record is then durable) and exits the process at once, like ``kill -9``. It
patches Faust's sends and, where the worker has them, its batched sends
(``SHOPSTREAM_BATCH_PRODUCE``: ``Table.send_changelog_batch`` and the outbox's
``send_batches``), so it injects the same crash point into any version of the worker.
"""

from __future__ import annotations

import os
from typing import Any

from faust.tables.base import Collection
from faust.topics import Topic

AFTER = int(os.environ.get("SHOPSTREAM_TEST_CRASH_AFTER_CHANGELOG", "0"))
EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL
_state = {"writes": 0}
_send_changelog = Collection.send_changelog
_send = Topic.send


def send_changelog(self: Any, *args: Any, **kwargs: Any) -> Any:
    _state["writes"] += 1
    return _send_changelog(self, *args, **kwargs)


async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
    if AFTER and _state["writes"] >= AFTER:
        await self.app.producer.flush()  # the changelog records so far are durable
        print(f"crashpoint: exit after {_state['writes']} changelog writes", flush=True)
        os._exit(EXIT_STATUS)
    return await _send(self, *args, **kwargs)


Collection.send_changelog = send_changelog  # type: ignore[method-assign]
Topic.send = send  # type: ignore[method-assign]

try:  # the batched sends of issue 20
    from streams.patches.table import Table
    from streams.worker import publish
except ImportError:  # a worker without them
    pass
else:
    _send_changelog_batch = Table.send_changelog_batch
    _send_batches = publish.send_batches

    async def send_changelog_batch(self: Any, records: Any) -> None:
        await _send_changelog_batch(self, records)
        _state["writes"] += len(records)

    async def send_batches(app: Any, records: Any) -> Any:
        if AFTER and _state["writes"] >= AFTER and records:
            await app.producer.flush()
            print(f"crashpoint: exit after {_state['writes']} changelog writes", flush=True)
            os._exit(EXIT_STATUS)
        return await _send_batches(app, records)

    Table.send_changelog_batch = send_changelog_batch  # type: ignore[method-assign]
    publish.send_batches = send_batches  # type: ignore[attr-defined]
