"""The sales forecasts, published to ``shop.forecasts`` once the days they learn from are
complete (issue 18, Build 6; the rules in :mod:`streams.domain.forecasts`).

A timer (``SHOPSTREAM_FORECAST_INTERVAL_S``) on every worker reads the partitions'
watermarks that the business figures' script keeps (fenced with the figures,
:mod:`streams.worker.kpi_store`), finds the origin days due, and for each of the oldest
``SHOPSTREAM_FORECAST_ORIGINS_PER_CHECK`` of them (a catch-up is paced), oldest first:

1. works out its forecasts from the stored days before it, in a process of its own
   (:mod:`streams.worker.forecast_process`: a refit takes ~0.6 s per scope on 26 weeks of
   days, docs/marketing.md; in a thread, its pure Python held the GIL the batch loop needs);
2. keeps them in Redis (``fc:o:<origin>``, ``HSETNX`` per scope): the first forecast of
   an origin is the one every later send repeats, even if a late event changed a day
   before it meanwhile (a duplicate is always the same record);
3. sends the kept records and waits until Kafka acknowledged them;
4. marks the origin sent (``fc:sent``, compare-and-set: it only moves forward).

A crash between 3 and 4 sends the origin again (same ids, same values); so may two
workers whose timers run at once. A partition is idle (left out of the low watermark)
after ``max(SHOPSTREAM_IDLE_ADVANCE_S, IDLE_FLOOR_S)`` without a record, judged only once
this worker has run that long. Nothing is fenced by partition: the forecasts belong
to no partition, and every effect is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from models.forecast import iso_day
from models.similarity import key_base
from streams.core.payloads import Forecast
from streams.domain.forecasts import HISTORY_DAYS, due_origins, low_watermark
from streams.domain.kpis import day_number
from streams.worker.context import ShopApp, Topic
from streams.worker.forecast_process import ForecastProcess
from streams.worker.publish import Outbox
from streams.worker.sources import Sources

log = logging.getLogger(__name__)
Retry = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
#: How long (wall clock) an origin's kept forecasts stay in Redis.
KEEP_S = 35 * 86_400
#: A partition is idle for the forecasts after no record for this long at least (and
#: ``SHOPSTREAM_IDLE_ADVANCE_S``): a backlog or a restart must not look like a quiet shop.
IDLE_FLOOR_S = 900.0

KEEP = """
local key, ttl = KEYS[1], tonumber(ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', key, ttl)
local out = {}
for i = 2, #ARGV, 2 do out[#out + 1] = redis.call('HGET', key, ARGV[i]) end
return out
"""
MARK = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return cur
"""


class ForecastEmitter:
    """Publishes the forecasts of every due origin (:meth:`tick`, the timer)."""

    def __init__(
        self, shop: ShopApp, topic: Topic, sources: Sources, retry: Retry,
        process: ForecastProcess | None = None,
    ) -> None:  # fmt: skip
        self.shop, self.topic, self.sources, self.retry = shop, topic, sources, retry
        self.process = process or ForecastProcess()  # started at its first use if not yet
        self.base = key_base(shop.settings.redis_prefix)
        self.started_s: float | None = None  # the first tick with the runtime ready

    def register(self) -> None:
        interval = self.shop.settings.forecast_interval_s
        if interval > 0:
            self.shop.app.timer(interval=interval, name="publish_forecasts")(self.tick)

            @self.shop.app.on_before_shutdown.connect  # type: ignore[arg-type]
            async def stop_process(app: Any, **kwargs: Any) -> None:
                await asyncio.to_thread(self.process.close)  # may wait for a request's end

    async def tick(self) -> None:
        """Send what is due; a failure is logged and tried again at the next tick."""
        if not self.shop.runtime.ready:
            return
        if self.started_s is None:
            self.started_s = time.time()
        try:
            await self.publish_due()
        except Exception:
            if not self.shop.runtime.ready or self.process.closed:  # stopped under the tick
                log.info("sales forecasts: stopped before they were sent; sent at the next start")
                return
            log.exception("publishing the sales forecasts failed; trying again later")

    def idle_s(self) -> float:
        """How long a partition must be quiet to be left out (0: never)."""
        idle = self.shop.settings.idle_advance_s
        return max(idle, IDLE_FLOOR_S) if idle > 0 else 0.0

    async def due(self) -> list[int]:
        """The origin days due now, at most ``forecast_origins_per_check`` of them."""
        kpis, redis = self.shop.runtime.kpis, self.shop.runtime.redis
        source = self.sources.fence_field(0).rpartition(":")[0]
        marks, seen = await kpis.watermarks(source)
        topic = self.shop.settings.topic_events
        count = self.shop.app.consumer.topic_partitions(topic) or self.shop.settings.partitions
        for p in range(count):  # a partition without a watermark yet holds the others back
            marks.setdefault(self.sources.fence_field(p), -1)
        now_s, idle_s = time.time(), self.idle_s()
        # idleness is judged only after this worker has watched for that long
        if self.started_s is None or now_s - self.started_s < idle_s:
            idle_s = 0.0
        low = low_watermark(marks, seen, now_ms=round(now_s * 1000), idle_ms=round(idle_s * 1000))
        first = [d.decode() if isinstance(d, bytes) else str(d)
                 for d in await redis.zrange(self.base + "kpi:days", 0, 0)]  # fmt: skip
        sent = await redis.get(self.base + "fc:sent")
        return due_origins(
            low, first_day=day_number(first[0]) if first else None,
            sent=int(sent) if sent is not None else -1,
            most=self.shop.settings.forecast_origins_per_check,
        )  # fmt: skip

    async def publish_due(self) -> int:
        """Publish the due origins (:meth:`due`: ``forecast_origins_per_check`` at most),
        oldest first; returns the records sent. Each is 0.25 s (the bench) to ~3.6 s (six scopes
        on 26 weeks of days) of CPU in the forecast process, so a catch-up is paced, not a
        burst (docs/performance.md, "Nineteenth round"). The days they learn from are read
        once, as the store's counters, and passed to the forecast process unparsed: reading
        and converting each one's history in the worker held its batches up
        (docs/performance.md, "Fifteenth round")."""
        due = await self.retry("finding the due forecasts", self.due)
        if not due:
            return 0
        days = await self.retry("reading the days to forecast from", lambda: self.history(due))
        sent = 0
        for origin in due:  # each takes the days of its own history (forecasts_for)
            sent += await self.publish(origin, days)
        return sent

    async def history(self, origins: list[int]) -> bytes:
        """The stored days the forecasts of ``origins`` (ascending) learn from, unparsed."""
        first, last = iso_day(origins[0] - HISTORY_DAYS), iso_day(origins[-1] - 1)
        return await self.shop.runtime.kpis.raw_days(first, last)

    async def publish(self, origin: int, days: bytes) -> int:
        """Publish the forecasts of ``origin`` from ``days`` (:meth:`KpiStore.raw_days`
        of a range that covers its history)."""
        redis = self.shop.runtime.redis
        made = await self.process.forecasts(days, origin, self.shop.settings.forecast_categories)
        kept = await self.retry("keeping the forecasts", lambda: self.keep(origin, made))
        outbox = Outbox()
        for record in kept:
            await outbox.send(self.topic, record["scope"].encode(), orjson.dumps(record))
        await outbox.delivered()
        await self.retry("marking the forecasts sent",
                         lambda: redis.eval(MARK, 1, self.base + "fc:sent", origin))  # fmt: skip
        if kept:
            log.info("sales forecasts of %s sent (%d scopes)", iso_day(origin), len(kept))
        return len(kept)

    async def keep(self, origin: int, made: list[Forecast]) -> list[Forecast]:
        """The forecasts of ``origin`` as first kept (``made`` where none was)."""
        if not made:
            return []
        args: list[Any] = [KEEP_S]
        for record in made:
            args += [record["scope"], orjson.dumps(record)]
        stored = await self.shop.runtime.redis.eval(KEEP, 1, self.base + f"fc:o:{origin}", *args)
        return [orjson.loads(v) for v in stored]

    async def latest(self) -> list[Forecast]:
        """The forecasts of the last origin sent (what the dashboard may show)."""
        redis = self.shop.runtime.redis
        sent = await redis.get(self.base + "fc:sent")
        if sent is None:
            return []
        kept = await redis.hgetall(self.base + f"fc:o:{int(sent)}")
        return sorted((orjson.loads(v) for v in kept.values()), key=lambda r: r["forecast_id"])
