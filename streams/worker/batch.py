"""One batch of consumed records → every effect, each of them idempotent.

The recipe, in the order :meth:`BatchProcessor.process` runs it (every effect is fenced, so
a redelivered batch changes nothing):

==  ===========  ==========================================  ===================================
 1  intake       bytes → event, or DLQ with a reason          :mod:`streams.worker.intake`
 2  classify     fresh / redelivered / duplicate / rate       :mod:`streams.domain.envelope`
 3  anomalies    flag; flagged bots are kept out of learning  :mod:`models.anomaly`
 4  plan         which users get a recommendation             :mod:`streams.domain.recommendations`
 5  learn+score  Redis similarity counts (one fenced Lua      :mod:`models.similarity`
                 call), concurrently with step 6
 6  users        profile, churn, segments → envelopes         :mod:`streams.worker.users`
 7  publish      DLQ, segments, alerts, recommendations       this module
 8  account      metrics, checkpoint                          :mod:`streams.telemetry`,
                                                              :mod:`streams.worker.checkpoints`
==  ===========  ==========================================  ===================================

Rebalances (:mod:`streams.worker.partitions`) and erasure (:mod:`streams.worker.erasure`)
are next door; they share the batch lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson

from models.similarity import key_base
from streams.core.events import Event, Limits, Record
from streams.core.payloads import ChurnAlert
from streams.domain.churn_state import ChurnConfig
from streams.domain.envelope import classify, last_rec_ms
from streams.domain.outputs import anomaly_message
from streams.domain.recommendations import plan_recommendations, recommendation_message
from streams.telemetry import StageClock, consumer_lag
from streams.worker import erasure
from streams.worker.checkpoints import Checkpointer
from streams.worker.context import ShopApp
from streams.worker.intake import Clock, by_partition, dlq_headers, split, to_record
from streams.worker.partitions import Partitions
from streams.worker.retry import retry_forever
from streams.worker.users import UserUpdates, update_users

log = logging.getLogger(__name__)
T = TypeVar("T")
ALERT_TTL_S = 400 * 86_400
#: Verdicts whose events stay in the batch (duplicates and rate-limited ones leave it).
KEPT = frozenset({"fresh", "redelivered"})


class BatchProcessor:
    """Processes the agent's batches; owns the per-partition state and the batch lock."""

    def __init__(self, shop: ShopApp) -> None:
        s = shop.settings
        self.shop, self.settings, self.telemetry = shop, s, shop.telemetry
        self.pseudo_key = s.pseudonymise_key.encode()
        self.limits = Limits.from_settings(s)
        self.checkpointer = Checkpointer(s)
        # Held while a batch runs, so that a hand-over or `forget` never races a batch.
        self.lock = asyncio.Lock()
        self.parts = Partitions(
            shop, self.checkpointer.restore(), ChurnConfig.from_settings(s), self.lock, self.retry
        )
        self.alert_key = key_base(s.redis_prefix) + "alerted:"

    # --- the batch ------------------------------------------------------------------------
    async def process(self, batch: Sequence[Any]) -> None:
        await self.shop.runtime.wait_ready()
        async with self.lock:
            await self._process(batch)

    async def _process(self, batch: Sequence[Any]) -> None:
        started = time.perf_counter()
        clock = StageClock(started)
        await self.parts.settle()
        valid, rejected = split(
            map(to_record, batch), Clock.from_settings(self.settings, round(time.time() * 1000)),
            limits=self.limits, pseudonymise_key=self.pseudo_key,
        )  # fmt: skip
        for rec, reason, detail in rejected:
            await self.dead_letter(rec, reason, detail)
        clock.lap("validate")
        if valid:
            users = UserUpdates(self.shop.profiles)
            valid, unreadable = users.admit(valid)
            verdicts = classify(valid, users.load, self.settings.max_events_per_min)
            await self.reject_unwanted(valid, verdicts)
            fresh = [rv for rv, v in zip(valid, verdicts, strict=True) if v == "fresh"]
            # redelivered events go to Redis too: its own fence decides there
            valid = [rv for rv, v in zip(valid, verdicts, strict=True) if v in KEPT]
            clock.lap("classify")
            applying = fresh
            learnable = await self.detect_anomalies(valid, fresh, users)
            if users.broken:  # an anomaly check failed: those users' events stay out
                valid, fresh = users.without_broken(valid), users.without_broken(fresh)
            clock.lap("anomalies")
            due = plan_recommendations(
                (e for _, e in fresh), lambda uid: last_rec_ms(users.load(uid)),
                self.settings.rec_throttle_ms,
            )  # fmt: skip
            # Redis learns the batch (and scores the due recommendations) while this thread
            # updates the profiles: the effects are independent, redis-server has its own core.
            learning = asyncio.ensure_future(self.learn(learnable, due))
            for _ in range(3):  # redis-py needs 2 turns to send the call (scripts/redis_overlap.py)
                await asyncio.sleep(0)
            try:
                update_users(self.parts, fresh, learnable, users, due)
                clock.lap("users")
            finally:
                scored = await learning
            clock.lap("similarity")
            await self.publish(users, due, scored, clock)
            await self.dead_letter_broken(users, [*unreadable, *applying])
        self.account(batch, valid, started)
        clock.lap("telemetry")
        if self.checkpointer.due():
            await self.checkpoint()
            clock.lap("checkpoint")
        self.telemetry.on_stages(clock.laps)

    async def reject_unwanted(
        self, valid: Sequence[tuple[Record, Event]], verdicts: Sequence[str]
    ) -> None:
        """Rate-limited events go to the DLQ; duplicates are only counted."""
        duplicates = verdicts.count("duplicate")
        if duplicates:
            log.info("%d duplicate event ids ignored", duplicates)
        limit = self.settings.max_events_per_min
        for (rec, _), verdict in zip(valid, verdicts, strict=True):
            if verdict == "rate_limited":
                await self.dead_letter(rec, "rate_limited", f"user has over {limit} events/minute")

    def account(
        self, batch: Sequence[Any], valid: Sequence[tuple[Record, Event]], started: float
    ) -> None:
        """Metrics of the batch (step 8)."""
        self.telemetry.on_batch(
            len(valid), time.perf_counter() - started, Counter(e.type for _, e in valid),
            [ev.message.timestamp for ev in batch],
        )  # fmt: skip
        self.report_lag(batch)
        m = self.parts.models.churn_metrics()
        self.telemetry.set_model_quality(m["auc"], m["log_loss"])

    async def checkpoint(self) -> None:
        """A checkpoint of the models now (the producer is flushed first)."""
        await self.checkpointer.save(self.parts.models, self.shop.app.producer.flush)

    async def dead_letter(self, rec: Record, reason: str, detail: str) -> None:
        headers = dlq_headers(rec, reason, detail)  # the detail escaped: safe to log
        log.warning(
            "rejected %s[%d]@%d: %s (%s)", rec.topic, rec.partition, rec.offset, reason,
            headers[1][1].decode(),
        )  # fmt: skip
        await self.shop.dlq.send(key=rec.key, value=rec.value, headers=headers)
        self.telemetry.on_dlq(reason)

    async def retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Redis calls: retried with backoff until they succeed (the batch stays unacked)."""
        return await retry_forever(
            what, fn, should_stop=lambda: self.shop.app.should_stop,
            on_retry=self.telemetry.on_redis_retry,
        )  # fmt: skip

    # --- steps ----------------------------------------------------------------------------
    async def dead_letter_broken(
        self, users: UserUpdates, events: Sequence[tuple[Record, Event]]
    ) -> None:
        """The events of users whose update failed in this batch (:class:`UserUpdates`)."""
        for rec, event in events:
            if event.user_id in users.broken:
                await self.dead_letter(rec, "processing_error", users.broken[event.user_id])

    async def detect_anomalies(
        self, valid: list[tuple[Record, Event]], fresh: list[tuple[Record, Event]],
        users: UserUpdates,
    ) -> list[tuple[Record, Event]]:  # fmt: skip
        """Publish anomalies of the ``fresh`` events; return those of ``valid`` that may teach
        the models (all but flagged bots'). A user whose check fails is broken in ``users``."""
        flags = []
        for rec, event in fresh:
            if event.user_id in users.broken:
                continue
            try:
                found = self.parts.models_for(rec.partition).anomalies.observe(event)
            except Exception as exc:  # noqa: BLE001 - confined to this user
                users.fail(event.user_id, "checking for anomalies", exc)
                continue
            flags += [anomaly_message(event, flag) for flag in found]
        for anomaly in flags:
            if anomaly["user_id"] not in users.broken:
                await self.shop.anomalies.send(
                    key=anomaly["user_id"].encode(), value=orjson.dumps(anomaly)
                )
                self.telemetry.on_anomaly(anomaly)
        valid = users.without_broken(valid) if users.broken else valid
        if not self.settings.exclude_bots:
            return valid
        models_for = self.parts.models_for
        return [(r, e) for r, e in valid if not models_for(r.partition).anomalies.is_bot(e.user_id)]

    async def learn(
        self, learnable: list[tuple[Record, Event]], due: list[Event]
    ) -> list[list[tuple[str, float]]]:
        """All partitions of the batch in one fenced script call (retried until it succeeds),
        which then scores the recommendations of the ``due`` trigger events (same order)."""
        groups = by_partition(learnable)
        requests = [(e.user_id, e.session_id) for e in due]
        store, k = self.shop.runtime.store, self.settings.rec_k
        _, scored = await self.retry(
            "similarity update", lambda: store.learn_and_recommend(groups, requests, k)
        )
        return scored

    async def publish(
        self,
        out: UserUpdates,
        due: list[Event],
        scored: list[list[tuple[str, float]]],
        clock: StageClock,
    ) -> None:
        """Outputs of the batch; ``scored``: the items of each ``due`` event, in order."""
        for seg in out.segments:
            await self.shop.segments.send(key=seg["user_id"].encode(), value=orjson.dumps(seg))
            self.telemetry.on_segment(seg)
        # after on_segment: the model's sizes are authoritative and replace the tally
        self.telemetry.set_segment_sizes(self.parts.models.segment_sizes())
        await self.publish_alerts(out.alerts)
        clock.lap("publish_segments_alerts")
        await self.recommend(due, out.triggers, scored)
        clock.lap("recommend_send")

    async def publish_alerts(self, alerts: list[ChurnAlert]) -> None:
        """At most one alert per ``alert_id``: Redis remembers which ones were published."""
        if not alerts:
            return
        redis = self.shop.runtime.redis

        async def mark() -> list[Any]:
            pipe = redis.pipeline(transaction=False)
            for a in alerts:
                pipe.set(self.alert_key + a["alert_id"], 1, nx=True, ex=ALERT_TTL_S)
            return await pipe.execute()

        fresh = await self.retry("alert de-duplication", mark)
        for alert, new in zip(alerts, fresh, strict=True):
            if not new:
                log.info("alert %s was already published; not repeating it", alert["alert_id"])
                continue
            await self.shop.churn_alerts.send(
                key=alert["user_id"].encode(), value=orjson.dumps(alert)
            )
            self.telemetry.on_alert(alert)

    async def recommend(
        self, due: list[Event], applied: dict[str, Event], scored: list[list[tuple[str, float]]]
    ) -> None:
        """Publish the scored items of the ``due`` events that were applied."""
        sent = 0
        for event, items in zip(due, scored, strict=True):
            if applied.get(event.user_id) is event:
                await self.shop.recommendations.send(
                    key=event.user_id.encode(), value=recommendation_message(event, items)
                )
                sent += 1
        if sent:
            self.telemetry.on_recommendations(sent)

    # --- next door ------------------------------------------------------------------------
    async def forget(self, uid: str) -> dict[str, int]:
        """Erase one user (:func:`streams.worker.erasure.forget`), between batches."""
        async with self.lock:
            return await erasure.forget(self.parts, uid)

    def report_lag(self, batch: Sequence[Any]) -> None:
        last: dict[Any, int] = {}
        for ev in batch:
            tp = ev.message.tp
            last[tp] = max(last.get(tp, -1), ev.message.offset)
        try:
            self.telemetry.set_lag(consumer_lag(self.shop.app.consumer.highwater, last))
        except Exception:
            log.debug("consumer lag unavailable", exc_info=True)
