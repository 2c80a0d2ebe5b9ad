"""Test hook: kill the worker after a batch's churn alerts were delivered, before its fence.

Imported before the worker starts (``WorkerProcess(..., preload="tests.support.alertpoint",
env={"SHOPSTREAM_TEST_CRASH_AFTER_ALERTS": "N"})``): once the worker has sent N churn
alerts, the next changelog write (the batch's envelopes, written after its outputs were
delivered) exits the process at once, like ``kill -9``. The redelivered batch derives the
same alerts again; the Redis marker must keep them from being sent twice (the marker used to
be set after the changelog write: this crash point then repeated every alert of the batch).
"""

from __future__ import annotations

import os
from typing import Any

from faust.tables.base import Collection

from streams.patches.table import Table
from streams.worker.publish import Publisher

AFTER = int(os.environ.get("SHOPSTREAM_TEST_CRASH_AFTER_ALERTS", "0"))
EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL
_sent = {"alerts": 0}
_alerts = Publisher.alerts
_send_changelog = Collection.send_changelog
_send_changelog_batch = Table.send_changelog_batch


def _crash_if_due() -> None:
    if AFTER and _sent["alerts"] >= AFTER:
        print(f"alertpoint: exit after {_sent['alerts']} alerts, before the fence", flush=True)
        os._exit(EXIT_STATUS)


async def alerts(self: Any, batch: Any) -> Any:
    sent = await _alerts(self, batch)
    _sent["alerts"] += len(sent)
    return sent


def send_changelog(self: Any, *args: Any, **kwargs: Any) -> Any:
    _crash_if_due()
    return _send_changelog(self, *args, **kwargs)


async def send_changelog_batch(self: Any, records: Any) -> None:
    if records:
        _crash_if_due()
    await _send_changelog_batch(self, records)


Publisher.alerts = alerts  # type: ignore[method-assign]
Collection.send_changelog = send_changelog  # type: ignore[method-assign]
Table.send_changelog_batch = send_changelog_batch  # type: ignore[method-assign]
