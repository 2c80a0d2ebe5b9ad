"""Step 7 of a batch: its outputs, sent before its fence is written (at least once).

Every output of a batch — dead letters, anomalies, segment changes, churn alerts,
recommendations — is queued in one :class:`Outbox` while the batch is worked out; once the
worker has checked that it still owns the batch's partitions, the outbox sends them all
(:meth:`Outbox.send_all`) and waits until Kafka acknowledged every one
(:meth:`Outbox.delivered`) *before* the envelopes (the per-user fence) are written to the
changelog. So a crash can
only ever lose outputs of a batch whose fence was not written: redelivered, the batch is
fresh again and its outputs are sent again, with the same deterministic ids
(``trigger_event_id``, ``alert_id``, ``anomaly_id``, the DLQ record's source offset). What a
consumer may see twice is listed in docs/reliability.md.

Churn alerts are de-duplicated by a marker in Redis (``<prefix>alerted:<alert_id>``), set
as soon as the alert was delivered (before the envelopes are written, so a crash between
the delivery and the fence does not send it again): an alert marked sent was sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from models.similarity import key_base
from streams.core.events import Event, Record
from streams.core.payloads import AlertOutcome, Anomaly, ChurnAlert, SegmentChange
from streams.domain.alerts import split_stale
from streams.domain.profile import DAY_MS
from streams.domain.recommendations import recommendation_message
from streams.patches.produce import send_batches
from streams.telemetry import Telemetry
from streams.worker.configs import RecArms, rec_arms
from streams.worker.context import ShopApp, Topic
from streams.worker.intake import dlq_headers

log = logging.getLogger(__name__)
T = TypeVar("T")
Retry = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
ALERT_TTL_S = 400 * 86_400


Message = tuple[Topic, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


class Outbox:
    """The outputs of one batch: queued, sent together, awaited together before the fence.

    >>> async def demo():
    ...     loop = asyncio.get_running_loop()
    ...     box, done = Outbox(), loop.create_future()
    ...     box.track(done)
    ...     loop.call_soon(done.set_result, "acked")
    ...     await box.delivered()
    ...     return len(box.pending)
    >>> asyncio.run(demo())
    0
    """

    def __init__(self, app: Any = None) -> None:
        #: with the Faust app: sent per (topic, partition) in aiokafka batches
        #: (:func:`streams.patches.produce.send_batches`); without: one ``Topic.send`` each
        self.app = app
        self.queued: list[Message] = []
        self.pending: list[asyncio.Future[Any]] = []
        self.sent = 0
        #: a batch read again after a restart whose outputs were delivered before it: its
        #: outputs are worked out (the models learn) but not sent again
        self.muted = False

    def track(self, delivery: Any) -> None:
        self.sent += 1
        if isinstance(delivery, asyncio.Future):
            self.pending.append(delivery)

    async def send(
        self, topic: Topic, key: bytes | None, value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:  # fmt: skip
        """Queue one message (sent by :meth:`send_all`)."""
        if not self.muted:
            self.queued.append((topic, key, value, headers))

    async def send_all(self) -> None:
        """Hand every queued message to the producer."""
        queued, self.queued = self.queued, []
        if self.app is not None:
            out = [(t.get_topic_name(), None, key, value, h) for t, key, value, h in queued]
            for delivery, _, _, count in await send_batches(self.app, out):
                self.pending.append(delivery)
                self.sent += count
            return
        for topic, key, value, headers in queued:
            self.track(await topic.send(key=key, value=value, headers=headers))

    async def delivered(self) -> None:
        """Send whatever is still queued, then wait until Kafka acknowledged every message
        (raises if one failed)."""
        await self.send_all()
        pending, self.pending = self.pending, []
        if pending:
            await asyncio.gather(*pending)


class Publisher:
    """Sends a batch's outputs through its :class:`Outbox` and keeps the metrics."""

    def __init__(self, shop: ShopApp, retry: Retry, arms: RecArms | None = None) -> None:
        self.shop, self.retry = shop, retry
        self.arms = arms or rec_arms(shop.settings)
        self.telemetry: Telemetry = shop.telemetry
        self.alert_key = key_base(shop.settings.redis_prefix) + "alerted:"
        self.batched = shop.settings.batch_produce  # SHOPSTREAM_BATCH_PRODUCE
        self.outbox = Outbox()

    def start_batch(self) -> Outbox:
        self.outbox = Outbox(self.shop.app if self.batched else None)
        return self.outbox

    async def dead_letter(self, rec: Record, reason: str, detail: str) -> None:
        headers = dlq_headers(rec, reason, detail)  # the detail escaped: safe to log
        log.warning(
            "rejected %s[%d]@%d: %s (%s)", rec.topic, rec.partition, rec.offset, reason,
            headers[1][1].decode(),
        )  # fmt: skip
        await self.outbox.send(self.shop.dlq, rec.key, rec.value, headers)
        self.telemetry.on_dlq(reason)

    async def anomalies(self, flags: list[Anomaly]) -> None:
        for anomaly in flags:
            value = orjson.dumps(anomaly)
            await self.outbox.send(self.shop.anomalies, anomaly["user_id"].encode(), value)
            self.telemetry.on_anomaly(anomaly)

    async def segments(self, changes: list[SegmentChange], sizes: dict[str, int]) -> None:
        for seg in changes:
            await self.outbox.send(self.shop.segments, seg["user_id"].encode(), orjson.dumps(seg))
            self.telemetry.on_segment(seg)
        # after on_segment: the model's sizes are authoritative and replace the tally
        self.telemetry.set_segment_sizes(sizes)

    async def alerts(self, alerts: list[ChurnAlert]) -> list[ChurnAlert]:
        """Send the alerts not marked as sent in Redis; returns those sent (to be marked by
        :meth:`mark_alerts` as soon as they are delivered). Alerts older
        than ``SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS`` (a backfill of history) are only
        counted."""
        max_age_ms = int(self.shop.settings.churn_alert_max_age_days * DAY_MS)
        alerts, stale = split_stale(alerts, round(time.time() * 1000), max_age_ms)
        if stale:
            self.telemetry.on_stale_alerts(len(stale))
        if not alerts:
            return []
        redis, keys = self.shop.runtime.redis, [self.alert_key + a["alert_id"] for a in alerts]
        marked = await self.retry("alert de-duplication", lambda: redis.mget(keys))
        sent = []
        for alert, mark in zip(alerts, marked, strict=True):
            if mark is not None:
                log.info("alert %s was already published; not repeating it", alert["alert_id"])
                continue
            value = orjson.dumps(alert)
            await self.outbox.send(self.shop.churn_alerts, alert["user_id"].encode(), value)
            self.telemetry.on_alert(alert)
            sent.append(alert)
        return sent

    async def outcomes(self, outcomes: list[AlertOutcome]) -> None:
        """Send the resolved alert outcomes. Those whose window ended more than
        ``SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS`` ago (history being imported, whose alerts
        were not published either) are not."""
        max_age_ms = int(self.shop.settings.churn_alert_max_age_days * DAY_MS)
        now_ms = round(time.time() * 1000)
        if max_age_ms > 0:
            outcomes = [o for o in outcomes if now_ms - o["window_end_ts"] <= max_age_ms]
        for o in outcomes:
            await self.outbox.send(self.shop.alert_outcomes, o["user_id"].encode(),
                                   orjson.dumps(o))  # fmt: skip
            self.telemetry.on_outcome(o)
        if outcomes:  # for GET /campaigns and the dashboard (survives restarts)
            kpis = self.shop.runtime.kpis
            await self.retry("storing alert outcomes", lambda: kpis.keep_outcomes(outcomes))

    async def mark_alerts(self, alerts: list[ChurnAlert]) -> None:
        if not alerts:
            return
        redis = self.shop.runtime.redis

        async def mark() -> list[Any]:
            pipe = redis.pipeline(transaction=False)
            for a in alerts:
                pipe.set(self.alert_key + a["alert_id"], 1, ex=ALERT_TTL_S)
            return await pipe.execute()

        await self.retry("marking alerts as sent", mark)

    async def recommendations(
        self, due: list[Event], applied: dict[str, Event], scored: list[list[tuple[str, float]]]
    ) -> None:
        """The scored items of the ``due`` events that were applied."""
        sent = 0
        for event, items in zip(due, scored, strict=True):
            if applied.get(event.user_id) is event:
                arm = self.arms.arm(event.user_id)
                value = recommendation_message(event, items, arm, self.arms.models[arm])
                self.telemetry.on_rec_arm(arm)
                await self.outbox.send(self.shop.recommendations, event.user_id.encode(), value)
                sent += 1
        if sent:
            self.telemetry.on_recommendations(sent)
