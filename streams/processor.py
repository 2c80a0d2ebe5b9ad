"""One batch of consumed records → every effect, each of them idempotent.

Order of work for a batch (all effects are fenced, so a redelivered batch changes nothing):

1. validate (``streams.pipeline.split``); invalid records → DLQ with a reason;
2. anomaly detection → ``shop.anomalies``; flagged bots are kept out of learning;
3. similarity counts in Redis (one Lua call per batch, each partition fenced by its offset),
   running while the worker thread does step 4;
4. per user: profile + churn (``streams.churn.step``, fenced by the offset in the user's
   envelope), segment changes → ``shop.segments``, churn alerts → ``shop.churn-alerts``
   (de-duplicated by ``alert_id`` in Redis);
5. recommendations for the users whose last event asked for one → ``shop.recommendations``
   (planned before step 3 and scored by the same Lua call, after it learned the batch).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from models.churn import model_version
from models.segments import LABELS as SEGMENT_LABELS
from models.segments import SegmentModel
from models.similarity import key_base
from streams import churn
from streams.churn import track_from_list, track_to_list
from streams.events import Event
from streams.models_runtime import Checkpointer, Handover, Models
from streams.pipeline import (
    REC_TRIGGERS,
    Envelope,
    Record,
    by_partition,
    dlq_headers,
    is_redelivery,
    iso_ms,
    plan_recommendations,
    recommendation_message,
    split,
)
from streams.profile import Profile, features, update_profile
from streams.retry import retry_forever
from streams.telemetry import consumer_lag
from streams.users import TrackedUsers, rebuild

if TYPE_CHECKING:
    from streams.app import ShopApp

log = logging.getLogger(__name__)
T = TypeVar("T")
ALERT_TTL_S = 400 * 86_400
#: Event ids remembered per user to drop producer duplicates (same ``event_id`` twice).
RECENT_IDS = 16
#: Longest a revocation or a clean stop waits to store the partition models in Redis.
HANDOVER_TIMEOUT_S = 10.0


@dataclass(slots=True)
class UserUpdates:
    """The user state one batch reads and writes, and what it produced."""

    table: Any  # the profile table
    envelopes: dict[str, Envelope] = field(default_factory=dict)  # loaded or changed
    written: set[str] = field(default_factory=set)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    triggers: dict[str, Event] = field(default_factory=dict)  # last applied trigger per user
    failed: list[tuple[Record, str]] = field(default_factory=list)

    def load(self, uid: str) -> Envelope | None:
        """The user's envelope: as changed in this batch, else as stored, else ``None``."""
        env = self.envelopes.get(uid)
        if env is None:
            raw = self.table.get(uid)
            if raw is None:
                return None
            env = self.envelopes[uid] = Envelope.from_bytes(raw)
        return env

    def lookup(self, uid: str) -> Profile | None:
        env = self.load(uid)
        return env.profile if env is not None else None


class BatchProcessor:
    def __init__(self, shop: ShopApp) -> None:
        s = shop.settings
        self.shop, self.settings, self.telemetry = shop, s, shop.telemetry
        self.pseudo_key = s.pseudonymise_key.encode()
        self.churn_cfg = churn.ChurnConfig.from_settings(s)
        self.checkpointer = Checkpointer(s)
        self.models = self.checkpointer.restore()
        self.states: dict[int, churn.ChurnState] = {}
        self.handover = Handover(s)
        self.given: set[int] = set()  # partitions whose models went to Redis at revocation
        # the source partitions of a new assignment, until the models are settled for them
        self.to_settle: set[int] | None = None
        self.alert_key = key_base(s.redis_prefix) + "alerted:"
        # Held while a batch runs, so that `forget` never races a batch holding the user.
        self.lock = asyncio.Lock()

    # --- the batch ------------------------------------------------------------------------
    async def process(self, batch: Sequence[Any]) -> None:
        await self.shop.runtime.wait_ready()
        async with self.lock:
            await self._process(batch)

    async def _process(self, batch: Sequence[Any]) -> None:
        started = time.perf_counter()
        clock = StageClock(started)
        if self.to_settle is not None:
            await self.settle(self.to_settle)
        records = [to_record(ev) for ev in batch]
        valid, rejected = split(
            records, max_bytes=self.settings.max_event_bytes, pseudonymise_key=self.pseudo_key
        )
        for rec, reason, detail in rejected:
            await self.dead_letter(rec, reason, detail)
        clock.lap("validate")
        if valid:
            users = UserUpdates(self.shop.profiles)
            fresh, duplicates, limited = classify(valid, users, self.settings.max_events_per_min)
            if duplicates:
                log.info("%d duplicate event ids ignored", len(duplicates))
            for rec, event in valid:
                if id(event) in limited:
                    detail = f"user has over {self.settings.max_events_per_min} events/minute"
                    await self.dead_letter(rec, "rate_limited", detail)
            dropped = duplicates | limited
            valid = [(r, e) for r, e in valid if id(e) not in dropped]
            clock.lap("classify")
            learnable = await self.detect_anomalies(valid, fresh)
            clock.lap("anomalies")
            applying = [(r, e) for r, e in valid if id(e) in fresh]
            due = plan_recommendations(
                (e for _, e in applying), lambda uid: last_rec_ms(users.load(uid)),
                self.settings.rec_throttle_ms,
            )  # fmt: skip
            # Redis learns the batch (and scores the due recommendations) while this thread
            # updates the profiles: the effects are independent, redis-server has its own core.
            learning = asyncio.ensure_future(self.learn(learnable, due))
            for _ in range(3):  # redis-py needs 2 turns to send the call (scripts/redis_overlap.py)
                await asyncio.sleep(0)
            try:
                self.update_users(applying, learnable, users, due)
                clock.lap("users")
            finally:
                scored = await learning
            clock.lap("similarity")
            await self.publish(users, due, scored, clock)
        self.telemetry.on_batch(
            len(valid), time.perf_counter() - started, Counter(e.type for _, e in valid),
            [ev.message.timestamp for ev in batch],
        )  # fmt: skip
        self.report_lag(batch)
        m = self.models.churn_metrics()
        self.telemetry.set_model_quality(m["auc"], m["log_loss"])
        clock.lap("telemetry")
        if self.checkpointer.due():
            await self.checkpointer.save(self.models, self.shop.app.producer.flush)
            clock.lap("checkpoint")
        self.telemetry.on_stages(clock.laps)

    async def dead_letter(self, rec: Record, reason: str, detail: str) -> None:
        log.warning(
            "rejected %s[%d]@%d: %s (%s)", rec.topic, rec.partition, rec.offset, reason, detail
        )
        headers = dlq_headers(rec, reason, detail)
        await self.shop.dlq.send(key=rec.key, value=rec.value, headers=headers)
        self.telemetry.on_dlq(reason)

    async def retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Redis calls: retried with backoff until they succeed (the batch stays unacked)."""
        return await retry_forever(
            what, fn, should_stop=lambda: self.shop.app.should_stop,
            on_retry=self.telemetry.on_redis_retry,
        )  # fmt: skip

    # --- steps ----------------------------------------------------------------------------
    async def detect_anomalies(
        self, valid: list[tuple[Record, Event]], fresh: set[int]
    ) -> list[tuple[Record, Event]]:
        """Publish anomalies of fresh events; return the events that may teach the models."""
        for rec, event in valid:
            if id(event) not in fresh:
                continue  # redelivered: observed before
            for anomaly in self.models_for(rec.partition).anomalies.observe(event):
                await self.shop.anomalies.send(
                    key=event.user_id.encode(), value=orjson.dumps(anomaly)
                )
                self.telemetry.on_anomaly(anomaly)
        if not self.settings.exclude_bots:
            return valid
        return [
            (r, e) for r, e in valid if not self.models_for(r.partition).anomalies.is_bot(e.user_id)
        ]

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

    # --- partition handover (streams.models_runtime.Handover) -----------------------------
    async def hand_over(self) -> None:
        """Giving partitions up (revocation, shutdown): store every bundle held for the
        partitions' next owners (an older one never replaces a newer stored one).

        Bounded in time (a rebalance must not wait on Redis); if it fails, the next owner
        starts those models from its own copy and this worker keeps its copies.
        """
        if not self.handover.enabled or not self.shop.runtime.ready:
            return

        async def give() -> dict[int, bool]:
            async with self.lock:  # not in the middle of a batch
                return await self.handover.give(
                    self.shop.runtime.redis, self.models, sorted(self.models.parts)
                )

        try:
            given = await asyncio.wait_for(give(), HANDOVER_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a rebalance goes on regardless
            log.warning("storing partition models for the next owners failed: %r", exc)
            return
        self.given = set(given)
        if given:
            log.info("partitions %s: models handed over (stored: %s)", sorted(given),
                     sorted(p for p, new in given.items() if new))  # fmt: skip

    def on_assigned(self, partitions: set[int]) -> None:
        """At assignment: drop stored bundles we did not get back; settle before a batch."""
        if not self.handover.enabled:
            return
        for p in self.given - partitions:
            self.models.parts.pop(p, None)  # stored in Redis, at least as new as ours
        self.given = set()
        self.to_settle = set(partitions)

    async def settle(self, assigned: set[int]) -> None:
        """Before the first batch after an assignment (Redis is up by then): store and drop
        the models of partitions we do not have, take newer stored ones of those we have."""
        redis = self.shop.runtime.redis
        self.to_settle = None
        try:  # retried while Redis is unreachable; any other error must not fail the batch
            released, taken = await self.retry(
                "settling the models of assigned partitions",
                lambda: self.handover.settle(redis, self.models, assigned),
            )
        except Exception:
            log.exception("settling the partition models failed; going on with our copies")
            return
        if released:
            log.info("partitions %s: models of partitions owned elsewhere released", released)
        if taken:
            log.info("partitions %s: took over the models their previous owner stored", taken)

    def models_for(self, partition: int) -> Models:
        """The models of one source partition (each learns only from its partition)."""
        return self.models.get(partition, self.settings)

    def state_for(self, partition: int) -> churn.ChurnState:
        """The partition's churn state, rebuilt from the stored tracks on first use."""
        state = self.states.get(partition)
        if state is None:
            tracks = {}
            for uid, raw in self.shop.profiles.data.items():
                env = Envelope.from_bytes(raw)
                if env.partition == partition and env.track is not None:
                    tracks[uid] = track_from_list(env.track)
            state = self.states[partition] = rebuild(tracks, self.churn_cfg)
            log.info("partition %d: churn state rebuilt for %d users", partition, len(tracks))
        return state

    def update_users(
        self,
        fresh: list[tuple[Record, Event]],
        learnable: list[tuple[Record, Event]],
        out: UserUpdates,
        due: list[Event],
    ) -> None:
        """Profiles, churn, segments of the fresh events; envelopes written to the table."""
        cfg = self.churn_cfg
        teach = {id(e) for _, e in learnable}
        touched: set[int] = set()
        for rec, event in fresh:
            uid = event.user_id
            env = out.load(uid)
            old = env.profile if env is not None else None
            models = self.models_for(rec.partition)
            try:
                if id(event) in teach:
                    state = self.state_for(rec.partition)
                    touched.add(rec.partition)
                    profile, alerts, _ = churn.step(
                        state, old, event, models.churn, cfg, out.lookup
                    )
                    out.alerts += alerts
                else:  # a flagged bot: profile only, no churn labels or training
                    profile = update_profile(old, event)
            except Exception as exc:
                log.exception(
                    "user update failed at %s[%d]@%d", rec.topic, rec.partition, rec.offset
                )
                out.failed.append((rec, repr(exc)))
                continue
            models.seen(rec.topic, rec.partition, rec.offset, event.ts_ms)
            recent = ((env.recent if env else []) + [id_hash(event.event_id)])[-RECENT_IDS:]
            rate = bump_rate(env.rate if env else [], event.ts_ms)
            out.envelopes[uid] = Envelope(
                profile, rec.offset, event.session_id, env.last_rec_ms if env else -1,
                rec.partition, env.segment if env else None, env.track if env else None,
                recent, rate,
            )  # fmt: skip
            out.written.add(uid)
            if event.type in REC_TRIGGERS and event.item_id is not None:
                out.triggers[uid] = event
        self.store_tracks(touched, out)
        self.update_segments(fresh, out)
        self.write(out, due)

    def store_tracks(self, partitions: set[int], out: UserUpdates) -> None:
        for partition in partitions:
            users = self.states[partition].users
            assert isinstance(users, TrackedUsers)
            for uid in users.take_dirty():
                env = out.load(uid)
                if env is not None:
                    env.track = track_to_list(dict.__getitem__(users, uid))
                    out.written.add(uid)

    def update_segments(self, valid: list[tuple[Record, Event]], out: UserUpdates) -> None:
        last_ts = {e.user_id: e.ts_ms for _, e in valid}
        for alert in out.alerts:  # idle users move segment without events of their own
            last_ts.setdefault(alert["user_id"], alert["ts"])
        for uid, ts in last_ts.items():
            env = out.envelopes.get(uid)
            if env is None:
                continue
            upd = self.models_for(env.partition).segments.update(
                env.profile, ts, previous=env.segment
            )
            if upd.changed:
                out.segments.append(SegmentModel.payload(uid, upd, ts))
            if env.segment != upd.segment:
                env.segment = upd.segment
                out.written.add(uid)
        for alert in out.alerts:
            env = out.envelopes.get(alert["user_id"])
            alert["segment"] = env.segment if env and env.segment else alert["segment"]

    def write(self, out: UserUpdates, due: list[Event]) -> None:
        """Write changed envelopes, naming the changelog partition (the source partition).

        ``out.triggers`` keeps the ``due`` events that were applied (an event whose update
        failed went to the DLQ instead): the envelope remembers when they were published.
        """
        out.triggers = {e.user_id: e for e in due if out.triggers.get(e.user_id) is e}
        for event in out.triggers.values():
            out.envelopes[event.user_id].last_rec_ms = event.ts_ms
        table = self.shop.profiles
        for uid in out.written:
            env = out.envelopes[uid]
            value = env.to_bytes()
            table.data[uid] = value
            table.send_changelog(env.partition, uid, value)

    async def publish(
        self,
        out: UserUpdates,
        due: list[Event],
        scored: list[list[tuple[str, float]]],
        clock: StageClock,
    ) -> None:
        """Outputs of the batch; ``scored``: the items of each ``due`` event, in order."""
        for rec, detail in out.failed:
            await self.dead_letter(rec, "processing_error", detail)
        for seg in out.segments:
            await self.shop.segments.send(key=seg["user_id"].encode(), value=orjson.dumps(seg))
            self.telemetry.on_segment(seg)
        # after on_segment: the model's sizes are authoritative and replace the tally
        self.telemetry.set_segment_sizes(self.models.segment_sizes())
        await self.publish_alerts(out.alerts)
        clock.lap("publish_segments_alerts")
        await self.recommend(due, out.triggers, scored, clock)

    async def publish_alerts(self, alerts: list[dict[str, Any]]) -> None:
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
        self,
        due: list[Event],
        applied: dict[str, Event],
        scored: list[list[tuple[str, float]]],
        clock: StageClock,
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
        clock.lap("recommend_send")

    async def forget(self, uid: str) -> dict[str, int]:
        """Erase one user: profile (with a changelog tombstone), churn track (so no pending
        alert fires), model memories, and the Redis session/purchase keys. Returns counts."""
        async with self.lock:
            removed = {"profile": 0, "churn_track": 0, "model_memory": 0, "redis_keys": 0,
                       "stored_models": 0}  # fmt: skip
            table = self.shop.profiles
            raw = table.get(uid)
            if raw is not None:
                env = Envelope.from_bytes(raw)
                del table.data[uid]
                table.send_changelog(env.partition, uid, None, value_serializer="raw")
                removed["profile"] = 1
                state = self.states.get(env.partition)
                if state is not None and dict.pop(state.users, uid, None) is not None:
                    removed["churn_track"] = 1
            for models in self.models.parts.values():
                segment_memory = models.segments.users.pop(uid, None)
                if segment_memory is not None:
                    removed["model_memory"] += 1
                    if segment_memory[0] is not None:  # keep the segment sizes true
                        models.segments.sizes[segment_memory[0]] -= 1
                removed["model_memory"] += models.anomalies.users.pop(uid, None) is not None
            store = self.shop.runtime.store
            removed["redis_keys"] = await self.retry("forget", lambda: store.forget_user(uid))
            # stored partition models may remember the user: our copies (now without the
            # user) replace stored ones as new as them; newer ones are their owner's
            redis, handover, held = self.shop.runtime.redis, self.handover, list(self.models.parts)
            removed["stored_models"] = await self.retry(
                "rewriting stored models", lambda: handover.rewrite(redis, self.models, held)
            )
            log.info("forgot user %s: %s", uid, removed)
            return removed

    def model_status(self) -> dict[str, Any]:
        m = self.models.churn_metrics()
        nan_to_none = {
            k: None if v != v else int(v) if k.startswith("n_") else round(v, 4)
            for k, v in m.items()
        }
        parts = self.models.parts
        # restored models keep the kind they were trained as, whatever the setting says now
        versions = sorted({ms.churn.model_version for ms in parts.values()})
        return {
            "churn": {
                "version": ", ".join(versions or [model_version(self.settings.churn_model)]),
                **nan_to_none,
            },
            "partitions": {
                str(p): {"labels": ms.churn.n_learned, "users": len(ms.segments.users)}
                for p, ms in sorted(self.models.parts.items())
            },
            "segments": self.models.segment_sizes(),
            "stream_time": iso_ms(self.models.stream_time_ms),
            "offsets": self.models.offsets,
            "last_checkpoint": self.checkpointer.last_path,
        }

    def describe(self, env: Envelope) -> dict[str, Any]:
        """Segment and churn probability of one user, at the partition's event-time clock."""
        state = self.states.get(env.partition)
        now = max(state.clock_ms if state else 0, env.profile.last_seen_ms)
        # read only: a user of a partition not held here (e.g. a standby copy) gets the
        # segment by the prior thresholds and no churn probability
        models = self.models.parts.get(env.partition) or Models.fresh(self.settings)
        name, (r, f, m) = models.segments.segment(env.profile, now)
        p_churn: float | None = None
        if env.partition in self.models.parts:
            p_churn = round(models.churn.predict_proba_one(features(env.profile, now)), 4)
        return {
            "segment": {"name": name, "label": SEGMENT_LABELS.get(name, name), "rfm": [r, f, m]},
            "churn_probability": p_churn,
            "as_of": iso_ms(now),
        }

    def report_lag(self, batch: Sequence[Any]) -> None:
        last: dict[Any, int] = {}
        for ev in batch:
            tp = ev.message.tp
            last[tp] = max(last.get(tp, -1), ev.message.offset)
        try:
            self.telemetry.set_lag(consumer_lag(self.shop.app.consumer.highwater, last))
        except Exception:
            log.debug("consumer lag unavailable", exc_info=True)


class StageClock:
    """Wall time per named stage of a batch (``lap`` closes the stage that just ended).

    >>> c = StageClock(0.0, now=iter([1.0, 3.5]).__next__)
    >>> c.lap("a"); c.lap("b"); c.laps
    {'a': 1.0, 'b': 2.5}
    """

    def __init__(self, start: float, now: Callable[[], float] = time.perf_counter) -> None:
        self.last, self.now = start, now
        self.laps: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        t = self.now()
        self.laps[stage] = self.laps.get(stage, 0.0) + t - self.last
        self.last = t


def classify(
    valid: list[tuple[Record, Event]], users: UserUpdates, limit_per_min: int = 0
) -> tuple[set[int], set[int], set[int]]:
    """Split a batch's events (by ``id``) into fresh, duplicate and rate-limited ones.

    An event is *redelivered* (none of them) when its offset is at or below the user's fence,
    a *duplicate* when its ``event_id`` is among the user's last ``RECENT_IDS`` applied ones
    (or earlier in this batch), *rate-limited* when the user already has ``limit_per_min``
    events in that event-time minute, and *fresh* otherwise. Every test reads state that is
    written together with the effects it guards, so the answer is the same after a crash.
    """
    fresh: set[int] = set()
    duplicates: set[int] = set()
    limited: set[int] = set()
    seen: dict[str, tuple[set[str], list[int]]] = {}
    for rec, event in valid:
        env = users.load(event.user_id)
        if is_redelivery(env, rec.offset):
            continue
        if event.user_id not in seen:
            seen[event.user_id] = (set(env.recent), env.rate) if env else (set(), [])
        ids, rate = seen[event.user_id]
        h = id_hash(event.event_id)
        if h in ids:
            duplicates.add(id(event))
            continue
        bumped = bump_rate(rate, event.ts_ms)
        if limit_per_min and bumped[1] > limit_per_min:
            limited.add(id(event))
            continue
        ids.add(h)
        seen[event.user_id] = (ids, bumped)
        fresh.add(id(event))
    return fresh, duplicates, limited


def last_rec_ms(env: Envelope | None) -> int:
    """Event time of the user's last published recommendation (-1: none, or a new user)."""
    return env.last_rec_ms if env is not None else -1


def bump_rate(rate: list[int], ts_ms: int) -> list[int]:
    """``[minute, events in it]`` after one more event (late events count in the current one).

    >>> bump_rate([], 120_000), bump_rate([2, 5], 150_000), bump_rate([2, 5], 200_000)
    ([2, 1], [2, 6], [3, 1])
    """
    minute = ts_ms // 60_000
    if rate and minute <= rate[0]:
        return [rate[0], rate[1] + 1]
    return [minute, 1]


def id_hash(event_id: str) -> str:
    """A short, stable digest of an event id (what envelopes remember).

    >>> id_hash("e-1001")
    'f1cd5725cd0d'
    """
    return hashlib.blake2b(event_id.encode(), digest_size=6).hexdigest()


def to_record(event: Any) -> Record:
    """The parts of a Faust event that processing needs."""
    msg = event.message
    return Record(msg.topic, msg.partition, msg.offset, event.key, event.value)
