"""One batch of consumed records → every effect, each of them idempotent.

The recipe, in the order :meth:`BatchProcessor.process` runs it (every effect is fenced, so
a redelivered batch changes nothing):

==  ===========  ==========================================  ===================================
 1  intake       bytes → event, or DLQ with a reason          :mod:`streams.worker.intake`
 2  classify     fresh / redelivered / duplicate / rate       :mod:`streams.domain.envelope`
 3  anomalies    flag; flagged bots are kept out of learning  :mod:`models.anomaly`
 4  plan         which users get a recommendation             :mod:`streams.domain.recommendations`
 5  learn+score  Redis similarity counts (one fenced Lua      :mod:`models.similarity`
                 call), concurrently with steps 6 and 7a
 6  users        profile, churn, segments → envelopes         :mod:`streams.worker.users`
 7a publish      DLQ, segments, alerts, business figures      :mod:`streams.worker.publish`
 7b publish      recommendations (Redis's answer), alert      :mod:`streams.worker.publish`
                 outcomes; all delivered, then the envelopes
                 (the fence)
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

from faust.types import TP
from redis.exceptions import ReadOnlyError, ResponseError

from models.similarity import guard, key_base
from streams.core.errors import Fenced, StateDiverged
from streams.core.events import Event, Limits, Record, safe_text
from streams.core.payloads import ChurnAlert
from streams.domain.churn_state import ChurnConfig
from streams.domain.envelope import classify, last_rec_ms
from streams.domain.outputs import anomaly_message
from streams.domain.recommendations import plan_recommendations
from streams.domain.screening import Screened, finish, screen
from streams.telemetry.measure import SlowBatches, StageClock, partition_lags
from streams.worker import erasure
from streams.worker.checkpoints import Checkpointer
from streams.worker.configs import rec_arms
from streams.worker.context import ShopApp
from streams.worker.idle import advance_idle
from streams.worker.intake import Clock, Fetched, by_partition, records_of, split
from streams.worker.kpis import KpiWriter
from streams.worker.partitions import Partitions
from streams.worker.publish import Outbox, Publisher
from streams.worker.retention import Retention
from streams.worker.retry import error_kind, retry_forever
from streams.worker.users import UserUpdates, update_users, write

log = logging.getLogger(__name__)
T = TypeVar("T")
QUALITY_EVERY_S = 1.0


def lost(text: str) -> StateDiverged:
    """Redis lost its data while the worker ran (``text`` says how it was seen)."""
    return StateDiverged(
        f"Redis lost its data while the worker ran ({text}): restore it from its AOF/RDB, "
        "or stop the workers and start over with `shopstream reset --yes` "
        "(docs/reliability.md, 'Redis durability')"
    )


def refusal(exc: ResponseError) -> Exception:
    """The similarity store's refusal as our error (``EPOCH``: the store lost its data;
    ``FENCED``: a partition moved on), or the error itself."""
    text = str(exc)
    if text.startswith("EPOCH"):
        return lost(text)
    if text.startswith("FENCED"):
        return Fenced(text)
    return exc


#: Verdicts whose events stay in the batch (duplicates and rate-limited ones leave it).
KEPT = frozenset({"fresh", "redelivered"})


class BatchProcessor:
    """Processes the agent's batches; owns the per-partition state and the batch lock."""

    def __init__(self, shop: ShopApp) -> None:
        s = shop.settings
        self.shop, self.settings, self.telemetry = shop, s, shop.telemetry
        self.pseudo_key = s.pseudonymise_key.encode()
        self.limits = Limits.from_settings(s)
        self.checkpointer = Checkpointer(s, on_refused=self.telemetry.on_state_refused)
        # Held while a batch runs, so that a hand-over or `forget` never races a batch.
        self.lock = asyncio.Lock()
        self.parts = Partitions(
            shop, self.checkpointer.restore(), ChurnConfig.from_settings(s), self.lock, self.retry
        )
        self.arms = rec_arms(s)
        self.out = Publisher(shop, self.retry, self.arms)
        self.kpis = KpiWriter(shop, self.parts.sources, self.retry, refusal)
        self.retention = Retention(self.parts)
        self.quality_at = -QUALITY_EVERY_S
        self.slow = SlowBatches()

    # --- the batch ------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Before the agent puts a batch in order: settle a new assignment (the partitions
        to read again are then in :meth:`Partitions.take_replays`)."""
        await self.shop.runtime.wait_ready()
        async with self.lock:
            await self.parts.settle()

    async def process(self, batch: Sequence[Any] | Fetched) -> None:
        """Process a batch of Faust events, or of fetches (the batch hand-off)."""
        await self.shop.runtime.wait_ready()
        async with self.lock:
            await self._process(batch)

    async def _process(self, batch: Sequence[Any] | Fetched) -> None:
        started = time.perf_counter()
        clock = StageClock(started)
        outbox = self.out.start_batch()
        await self.parts.settle()
        records = records_of(batch, self.parts.sources.incarnation)
        reached = await self.replay_marks(records, outbox)
        valid = await self.validate(records)
        clock.lap("validate")
        users = self.user_updates()
        partitions = {rec.partition for rec in records}
        sent_alerts: list[ChurnAlert] | None = None  # published early (with Redis's turn)
        if valid:
            valid, sent_alerts = await self.apply(valid, users, outbox, partitions, clock)
        await self.seal(outbox, users, partitions, clock, sent_alerts)
        if reached:  # the crash point may be the log's last record: no later batch passes it
            await self.parts.replay_passed(reached)
        self.account(records, valid, started)
        clock.lap("telemetry")
        if self.checkpointer.due():
            await self.checkpoint()
            clock.lap("checkpoint")
        if self.retention.due():
            await self.retention.sweep()
            clock.lap("retention")
        self.telemetry.on_stages(clock.laps, clock.wall)
        waited = self.telemetry.last_batch_wait_s  # set by account()
        if line := self.slow.report(len(records), clock.laps, clock.wall, waited):
            log.info(line)

    async def replay_marks(self, records: Sequence[Record], outbox: Outbox) -> set[int]:
        """After a restart, batches that sent their outputs before it send nothing again
        (``outbox.muted``); notes the re-read partitions this batch passes, and returns those
        whose crash point is one of its records (passed once the batch is sealed)."""
        if not self.parts.replay_until:
            return set()
        outbox.muted = all(self.parts.replayed(r.partition, r.offset) for r in records)
        passed = {r.partition for r in records if r.partition in self.parts.replay_until
                  and not self.parts.replayed(r.partition, r.offset)}  # fmt: skip
        if passed:
            await self.parts.replay_passed(passed)
        until = self.parts.replay_until
        return {r.partition for r in records if r.offset == until.get(r.partition)}

    async def validate(self, records: Sequence[Record]) -> list[tuple[Record, Event]]:
        """The valid events of the batch; the rest (and forgotten users' records) go to the
        DLQ or are dropped (:meth:`Tombstones.screen`)."""
        valid, rejected = split(
            records, Clock.from_settings(self.settings, round(time.time() * 1000)),
            limits=self.limits, pseudonymise_key=self.pseudo_key,
        )  # fmt: skip
        valid, rejected = self.parts.tombstones.screen(valid, rejected)  # forgotten users
        for rec, reason, detail in rejected:
            await self.out.dead_letter(rec, reason, detail)
        return valid

    async def apply(
        self, valid: list[tuple[Record, Event]], users: UserUpdates, outbox: Outbox,
        partitions: set[int], clock: StageClock,
    ) -> tuple[list[tuple[Record, Event]], list[ChurnAlert]]:  # fmt: skip
        """Classify, screen and apply the valid events, with Redis learning the batch (and
        scoring its recommendations) meanwhile; the recommendations join the outbox. Returns
        the events kept (for the metrics) and the alerts already published."""
        valid, unreadable = users.admit(valid)
        verdicts = classify(valid, users.load, self.settings.max_events_per_min)
        await self.reject_unwanted(valid, verdicts)
        fresh = [rv for rv, v in zip(valid, verdicts, strict=True) if v == "fresh"]
        # redelivered events go to Redis too: its own fence decides there
        valid = [rv for rv, v in zip(valid, verdicts, strict=True) if v in KEPT]
        clock.lap("classify")
        applying = fresh
        learnable, screened = await self.detect_anomalies(valid, fresh, users)
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
            clock.lap("users")
            await self.finish_anomalies(screened, valid, users)  # sent: the rest of them
            clock.lap("anomalies")
            update_users(self.parts, fresh, learnable, users, due)
            self.parts.seen({rec.partition for rec, _ in valid}, time.time())
            clock.lap("users")
            # still inside Redis's turn: the outputs that do not need its answer
            for rec, event in [*unreadable, *applying]:
                if event.user_id in users.broken:
                    reason = users.broken[event.user_id]
                    await self.out.dead_letter(rec, "processing_error", reason)
            shown = {e.event_id for e in due if users.triggers.get(e.user_id) is e}
            self.count_feedback(users.without_broken(fresh))
            sent_alerts = await self.publish_changes(users)
            if learning.done():  # refused already (Fenced, StateDiverged): write no more
                learning.result()
            await self.kpis.record(users.without_broken(valid), users.alerts, outbox,
                                   self.arms.arm, shown, partitions)  # fmt: skip
            clock.lap("publish")
        except BaseException as exc:  # the learning call is awaited (or cancelled) too
            if isinstance(exc, asyncio.CancelledError):
                learning.cancel()
            await asyncio.gather(learning, return_exceptions=True)
            raise
        scored = await learning
        clock.lap("similarity")
        if self.parts.replay_until and not outbox.muted:  # a batch across the restart point
            sent = {id(e) for rec, e in fresh if self.parts.replayed(rec.partition, rec.offset)}
            keep = [i for i, e in enumerate(due) if id(e) not in sent]
            due, scored = [due[i] for i in keep], [scored[i] for i in keep]
        await self.out.recommendations(due, users.triggers, scored)
        return valid, sent_alerts

    async def publish_changes(self, users: UserUpdates) -> list[ChurnAlert]:
        """The segment changes and alerts join the outbox (reading Redis at most: the alerts
        already sent); returns the alerts sent (to be marked once delivered)."""
        await self.out.segments(users.segments, self.parts.models.segment_sizes())
        return await self.out.alerts(users.alerts)

    async def seal(
        self, outbox: Outbox, users: UserUpdates, partitions: set[int], clock: StageClock,
        sent_alerts: list[ChurnAlert] | None = None,
    ) -> None:  # fmt: skip
        """The end of a batch (or of an idle advance): its segment changes and alerts join
        the outbox (unless the batch published them already: ``sent_alerts``); if the
        ``partitions`` are still ours (a worker paused while they moved must not publish),
        every output is sent and delivered, the alerts marked as sent at once (the only
        window in which a crash repeats an alert is that one Redis round trip), then the
        envelopes (the fence) are written. A crash before the fence re-derives the outputs
        with the same ids (at least once, docs/reliability.md)."""
        if sent_alerts is None:
            sent_alerts = await self.publish_changes(users)
        await self.out.outcomes(users.outcomes)  # writes Redis: only after the fenced calls
        clock.lap("publish")
        await self.still_ours(partitions)
        await outbox.delivered()
        await self.out.mark_alerts(sent_alerts)
        clock.lap("deliver")
        if users.serialised:
            await self.still_ours(partitions)
            await write(users, self.settings.batch_produce, self.parts)
            # The fence durable before the next batch: after a crash, the envelopes restored
            # from the changelog must say how far outputs went (the replay's crash point).
            # Faust flushes only before a commit: a kill then lost the changelog of batches
            # whose outputs were delivered and whose learning Redis had applied, and the
            # re-read sent their recommendations again, scored on the Redis state of later
            # batches (hand-off on: "22 recommendations differ"; envelopes said 10999, the
            # killed worker had finished the batch 11000..11499).
            await self.shop.app.producer.flush()
            clock.lap("changelog")

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
                detail = f"user has over {limit} events/minute"
                await self.out.dead_letter(rec, "rate_limited", detail)

    def account(
        self, records: Sequence[Record], valid: Sequence[tuple[Record, Event]], started: float
    ) -> None:
        """Metrics of the batch (step 8)."""
        self.telemetry.on_batch(
            len(valid), time.perf_counter() - started, Counter(e.type for _, e in valid),
            [r.timestamp_ms / 1000 if r.timestamp_ms > 0 else None for r in records],
        )  # fmt: skip
        self.report_lag(records)
        now = time.monotonic()
        if now - self.quality_at >= QUALITY_EVERY_S:  # per-partition guard metrics: ~0.1 ms
            self.quality_at = now
            self.telemetry.set_churn_quality(self.parts.models.churn_metrics())

    async def checkpoint(self) -> None:
        """A checkpoint of the models now (the producer is flushed first). A failure (a full
        disk, the broker away at shutdown) is logged and counted, never fails the batch:
        the next one is tried an interval later."""
        try:
            await self.checkpointer.save(self.parts.models, self.shop.app.producer.flush)
            await self.parts.store_models()  # new undo epochs (streams.worker.undo)
        except Exception as exc:  # noqa: BLE001 - a checkpoint is an optimisation
            self.checkpointer.postpone()
            self.telemetry.on_checkpoint_failure()
            log.error(  # noqa: TRY400 - one line; the cause is in the message
                "model checkpoint failed (%r); the next one in %.0fs", exc,
                self.settings.checkpoint_interval_s,
            )  # fmt: skip

    async def retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Redis calls: retried with backoff while the error is retriable
        (:func:`~streams.worker.retry.is_retriable`; the batch stays unacked), each retry
        logged and counted by error (``shopstream_redis_retries_total{error}``)."""

        async def attempt() -> T:
            try:
                return await fn()
            except ReadOnlyError:  # a failover made our master a replica: connect afresh
                await self.shop.runtime.redis.connection_pool.disconnect()
                raise

        return await retry_forever(
            what, attempt, should_stop=lambda: self.shop.app.should_stop,
            on_retry=lambda exc: self.telemetry.on_redis_retry(exc, error_kind(exc)),
        )  # fmt: skip

    def user_updates(self) -> UserUpdates:
        """A batch's user state, with the envelopes kept live between batches."""
        live_max = self.settings.live_envelopes
        return UserUpdates(self.shop.profiles, live=self.parts.envelopes, live_max=live_max)

    # --- steps ----------------------------------------------------------------------------
    async def detect_anomalies(
        self, valid: list[tuple[Record, Event]], fresh: list[tuple[Record, Event]],
        users: UserUpdates,
    ) -> tuple[list[tuple[Record, Event]], Screened]:  # fmt: skip
        """The rules' half of the anomaly check of the ``fresh`` events; returns those of
        ``valid`` that may teach the models (:func:`streams.domain.screening.screen`: all but
        a flagged bot's, decided event by event) and the screening, whose Half-Space Trees'
        half and flags :meth:`finish_anomalies` completes once Redis was asked to learn the
        batch (Redis is the live batch's critical path: docs/performance.md, "Eighteenth
        round"). A user whose check fails is broken in ``users``.

        Each user's windows and bot flag come from their envelope and go back into it
        (``users.anomaly``), so after a crash the same bots are flagged and kept out of
        learning as in a run without one."""
        models_for = self.parts.models_for
        imported: set[tuple[int, str]] = set()
        for rec, event in valid:
            key = (rec.partition, event.user_id)
            if key not in imported and event.user_id not in users.broken:
                env = users.load(event.user_id)
                models_for(rec.partition).anomalies.import_user(
                    event.user_id, env.anomaly if env is not None else None
                )
                imported.add(key)
        valid = users.without_broken(valid) if users.broken else valid
        found = screen(
            valid, {id(e) for _, e in fresh}, lambda rec: models_for(rec.partition).anomalies,
            exclude_bots=self.settings.exclude_bots,
        )  # fmt: skip
        for uid, exc in found.failed.items():
            users.fail(uid, "checking for anomalies", exc)
        return users.without_broken(found.learnable) if users.broken else found.learnable, found

    async def finish_anomalies(
        self, found: Screened, valid: list[tuple[Record, Event]], users: UserUpdates
    ) -> None:
        """The Half-Space Trees' half of :meth:`detect_anomalies` (scores, learning, flags:
        nothing that decides what Redis learns), run while Redis learns the batch; then the
        users' anomaly state goes into their envelopes and the flags join the outbox."""
        finish(found)
        if found.model_failed:  # their events stand; only their model scores are missing
            uid, exc = next(iter(found.model_failed.items()))
            log.error(
                "the anomaly model failed on events of %d users (first: %s: %r); their events "
                "are applied without a model score", len(found.model_failed), safe_text(uid),
                exc, exc_info=(type(exc), exc, exc.__traceback__),
            )  # fmt: skip
        models_for = self.parts.models_for
        for partition, uid in {(rec.partition, e.user_id) for rec, e in valid}:  # imported
            if uid not in users.broken:
                users.anomaly[uid] = models_for(partition).anomalies.export_user(uid)
        await self.out.anomalies([anomaly_message(e, flag) for e, flag in found.flags
                                  if e.user_id not in users.broken])  # fmt: skip

    async def learn(
        self, learnable: list[tuple[Record, Event]], due: list[Event]
    ) -> list[list[tuple[str, float]]]:
        """All partitions of the batch in one fenced script call (retried until it succeeds),
        which then scores the recommendations of the ``due`` trigger events (same order).

        The call is guarded: it refuses if the store lost its data (epoch) or a partition
        moved to another worker (owner tokens): StateDiverged and Fenced."""
        groups = by_partition(learnable)
        # arm B's users (an experiment, docs/recommendations.md) are scored with arm B's
        # setting in a second, read-only call on the updated store
        in_b = [bool(self.arms.share) and self.arms.arm(e.user_id) == "B" for e in due]
        requests = [(e.user_id, e.session_id) for e, b in zip(due, in_b, strict=True) if not b]
        runtime, k = self.shop.runtime, self.settings.rec_k
        check = guard(runtime.epoch, self.parts.sources.owners({p for _, p in groups}))
        try:
            _, scored = await self.retry(
                "similarity update",
                lambda: runtime.store.learn_and_recommend(groups, requests, k, check),
            )
        except ResponseError as exc:
            raise refusal(exc) from exc
        if not any(in_b):
            return scored
        b_requests = [(e.user_id, e.session_id) for e, b in zip(due, in_b, strict=True) if b]
        b_config = self.arms.configs["B"]
        b_scored = iter(await self.retry(
            "arm B recommendations",
            lambda: runtime.store.recommend_many(b_requests, k, b_config)))  # fmt: skip
        a_scored = iter(scored)
        return [next(b_scored) if b else next(a_scored) for b in in_b]

    def count_feedback(self, fresh: list[tuple[Record, Event]]) -> None:
        """``/metrics``: the batch's fresh events carrying a ``rec_id``, by arm."""
        for _, e in fresh:
            if e.rec_id and e.type in ("view", "add_to_cart", "purchase"):
                paid = (e.price or 0.0) * (1 if e.quantity is None else e.quantity)
                self.telemetry.on_rec_feedback(
                    self.arms.arm(e.user_id), e.type, paid if e.type == "purchase" else 0.0
                )

    async def still_ours(self, partitions: set[int]) -> None:
        """Raise Fenced unless the batch's partitions are still this worker's (checked after
        the outputs were delivered, right before the fence is written)."""
        redis, sources = self.shop.runtime.redis, self.parts.sources
        try:
            await self.retry("checking partition ownership",
                             lambda: sources.check_owner(redis, partitions))  # fmt: skip
        except Fenced:  # or was every token lost with the rest of Redis?
            epoch, key = self.shop.runtime.epoch, key_base(self.settings.redis_prefix) + "epoch"
            stored = await self.retry("checking the store epoch", lambda: redis.get(key))
            if epoch and stored != epoch.encode():
                raise lost(f"the store epoch {epoch} is gone") from None
            raise

    # --- next door ------------------------------------------------------------------------
    async def advance_idle(self) -> None:
        """The idle timer (``SHOPSTREAM_IDLE_ADVANCE_S``): move the clocks of the assigned
        partitions that have been idle and publish what that fires (streams.worker.idle),
        outputs before envelopes as in a batch (:meth:`seal`)."""
        app = self.shop.app
        if not self.shop.runtime.ready or app.in_recovery or app.rebalancing:
            return  # the table may be incomplete: no state is built from it now
        topic = self.settings.topic_events
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
        async with self.lock:
            if self.parts.to_settle is not None:
                return  # the next batch settles the assignment first (and may read again)
            try:
                users = self.user_updates()
                outbox = self.out.start_batch()
                idle_s = self.settings.idle_advance_s
                moved = advance_idle(self.parts, assigned, time.time(), idle_s, users)
                if moved:
                    await self.seal(outbox, users, set(moved), StageClock(time.perf_counter()))
            except Exception:  # the timer goes on; the state in memory is rebuilt from the table
                log.exception("advancing the clocks of idle partitions failed")
                self.parts.reset_state(assigned)

    async def forget(self, uid: str) -> dict[str, int]:
        """Erase one user (:func:`streams.worker.erasure.forget`), between batches; if the
        models remembered the user, a checkpoint without them replaces the older ones."""
        async with self.lock:
            await self.parts.forget_undo(uid)  # never put back after a crash: first
            removed = await erasure.forget(self.parts, uid)
            if removed["model_memory"]:
                await self.checkpointer.save(
                    self.parts.models, self.shop.app.producer.flush, only=True
                )
                await self.parts.store_models()  # the stored models were rewritten: an epoch
            return removed

    def report_lag(self, records: Sequence[Record]) -> None:
        last: dict[tuple[str, int], int] = {}
        for rec in records:
            key = (rec.topic, rec.partition)  # a TP per partition, not per record
            last[key] = max(last.get(key, -1), rec.offset)
        try:
            lags = partition_lags(
                self.shop.app.consumer.highwater, {TP(t, p): o for (t, p), o in last.items()}
            )
            self.telemetry.set_partition_lags({(t.topic, t.partition): n for t, n in lags.items()})
        except Exception:
            log.debug("consumer lag unavailable", exc_info=True)
