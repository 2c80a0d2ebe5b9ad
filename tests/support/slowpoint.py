"""Test hook: a worker that pauses before each batch (``SHOPSTREAM_TEST_BATCH_PAUSE_S``).

Imported before the worker starts (``WorkerProcess(..., preload="tests.support.slowpoint",
env={"SHOPSTREAM_TEST_BATCH_PAUSE_S": "0.2"})``). A fault test that must kill the worker in
the middle of its input polls for a condition (e.g. envelopes written since the models were
last stored); an idle machine let the worker finish the whole input between two polls, and
the condition then never came (a timeout seen on 2026-12-02). The pause leaves the batches
as they are (full batches, the same cuts as a clean run), only slower.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from streams.worker.batch import BatchProcessor

PAUSE_S = float(os.environ.get("SHOPSTREAM_TEST_BATCH_PAUSE_S", "0"))
_process = BatchProcessor._process


async def _paused(self: Any, batch: Any) -> None:
    await asyncio.sleep(PAUSE_S)
    await _process(self, batch)


BatchProcessor._process = _paused  # type: ignore[method-assign]
