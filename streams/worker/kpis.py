"""Step 6b of a batch: its business figures (:mod:`streams.worker.kpi_store`), applied
fenced while the similarity call still runs, and their ``shop.kpis`` snapshots queued in the
batch's outbox."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

import orjson
from redis.exceptions import ResponseError

from streams.core.events import Event, Record
from streams.core.payloads import ChurnAlert
from streams.domain.alerts import split_stale
from streams.domain.profile import DAY_MS
from streams.worker.context import ShopApp, Topic
from streams.worker.sources import Sources


class Sink(Protocol):
    async def send(self, topic: Topic, key: bytes | None, value: bytes | None) -> None: ...


class KpiWriter:
    """The batch's step: apply its figures (fenced, retried) and queue one ``shop.kpis``
    snapshot per day it touched in the batch's outbox (sent before the batch's fence)."""

    def __init__(
        self, shop: ShopApp, sources: Sources,
        retry: Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]],
        refusal: Callable[[ResponseError], Exception],
    ) -> None:  # fmt: skip
        self.shop, self.sources, self.retry, self.refusal = shop, sources, retry, refusal

    async def record(
        self, valid: Sequence[tuple[Record, Event]], alerts: Sequence[ChurnAlert], outbox: Sink,
        arm_of: Callable[[str], str] = lambda _: "", shown: Collection[str] = (),
        partitions: Collection[int] = (),
    ) -> None:  # fmt: skip
        """``valid``: the batch's applied and redelivered events (the store's fence decides);
        ``alerts``: its churn alerts (stale ones, never sent, are not tallied); ``arm_of``:
        a user's recommendation arm; ``shown``: ids of the events whose recommendation the
        batch publishes (impressions, counted with their event behind the same fence);
        ``partitions``: the batch's partitions, whose owner tokens the script checks with
        those of ``valid`` (alerts carry none, and every user of a batch may have failed)."""
        max_age_ms = int(self.shop.settings.churn_alert_max_age_days * DAY_MS)
        alerts = split_stale(list(alerts), round(time.time() * 1000), max_age_ms)[0]
        if not valid and not alerts:
            return
        runtime = self.shop.runtime
        owners = self.sources.owners({*partitions, *(rec.partition for rec, _ in valid)})
        try:
            _, days = await self.retry("business figures", lambda: runtime.kpis.apply(
                valid, alerts, epoch=runtime.epoch, owners=owners, arm_of=arm_of,
                shown=shown))  # fmt: skip
        except ResponseError as exc:
            raise self.refusal(exc) from exc
        for day in days:
            await outbox.send(self.shop.kpis, day["day"].encode(), orjson.dumps(day))
