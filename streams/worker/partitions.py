"""The per-partition state a worker holds, and what happens to it at a rebalance.

For every source partition it owns, a worker keeps a bundle of models
(:class:`~models.bundle.Models`) and a churn state (:class:`ChurnState`, derived from the
tracks stored in the partition's envelopes). When partitions move, the models move with them
through Redis (:class:`~streams.worker.handover.Handover`); the churn state is rebuilt from the
table by whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from faust.types import TP

from models.bundle import Models, ModelSet
from models.similarity import key_base
from streams.core.events import Record
from streams.domain.churn_state import ChurnConfig, ChurnState, rebuild, track_from_list
from streams.domain.envelope import Envelope
from streams.patches.tablestore import put
from streams.worker.configs import model_factory
from streams.worker.context import ShopApp
from streams.worker.handover import Handover
from streams.worker.sources import Sources
from streams.worker.tombstones import Tombstones
from streams.worker.undo import Entries

#: user -> (the table's bytes, the envelope they decode to), for users whose envelope is
#: unchanged since a batch decoded or wrote it: reused while the table holds those very bytes
LiveEnvelopes = dict[str, tuple[bytes, Envelope]]

log = logging.getLogger(__name__)
T = TypeVar("T")
Retry = Callable[[str, Callable[[], Awaitable[T]]], Awaitable[T]]

#: Longest a revocation or a clean stop waits to store the partition models in Redis.
HANDOVER_TIMEOUT_S = 10.0
#: how long one request for the log ends may take before it is asked again
LOG_ENDS_TIMEOUT_S = 15.0


class Partitions:
    """Models and churn state per source partition; the hand-over of the models."""

    def __init__(
        self, shop: ShopApp, models: ModelSet, churn_cfg: ChurnConfig, lock: asyncio.Lock,
        retry: Retry[Any],
    ) -> None:  # fmt: skip
        self.shop, self.models, self.churn_cfg = shop, models, churn_cfg
        self.fresh = model_factory(shop.settings)
        models.upgrade(self.fresh)  # a checkpoint of an older layout or another horizon
        self.states: dict[int, ChurnState] = {}
        #: partition -> (wall time, churn clock) at its last record (streams.worker.idle)
        self.anchors: dict[int, tuple[float, int]] = {}
        #: decoded envelopes kept between batches (:class:`streams.worker.users.UserUpdates`)
        self.envelopes: LiveEnvelopes = {}
        self.handover = Handover(shop.settings, on_refused=shop.telemetry.on_state_refused)
        self.sources = Sources(shop.settings)
        self.tombstones = Tombstones(shop, retry)  # erasure fences of forgotten users
        self.lock, self.retry = lock, retry
        self.given: set[int] = set()  # partitions whose models went to Redis at revocation
        # the source partitions of a new assignment, until the models are settled for them
        self.to_settle: set[int] | None = None
        #: envelopes as they were at the restored checkpoint (streams.worker.undo), put back
        #: at the first settle after the start, for the partitions then assigned
        self.rollback: Entries = {}
        #: partition -> offset to read it again from (the checkpoint's offset + 1), until the
        #: partition is revoked: the start of its first assignment after a restart
        self.replay_from: dict[int, int] = {}
        #: partition -> the highest offset whose batch delivered its outputs before the
        #: crash: batches up to it are read again to learn, and send nothing again (kept in
        #: Redis too, for whoever reads the partition next: :meth:`start_replays`)
        self.replay_until: dict[int, int] = {}
        #: partition -> its log start, asked at assignment (a replay needs it known)
        self.log_starts: dict[int, int] = {}

    def plan_replay(self, rollback: Entries) -> None:
        """At start: the undo log of the restored checkpoint; each partition it names is
        read again from the checkpoint's offset + 1."""
        self.rollback = rollback
        topic = self.shop.settings.topic_events
        offsets = self.models.offsets
        for partition in sorted({p for p, _ in rollback.values()}):
            self.replay_from[partition] = offsets.get(f"{topic}:{partition}", -1) + 1
        if self.replay_from:
            log.info("after a restart: %d envelopes changed since the checkpoint; partitions "
                     "will be read again from %s", len(rollback), self.replay_from)  # fmt: skip

    def roll_back(self, assigned: set[int], taken: set[int]) -> set[int]:
        """Put the envelopes of ``assigned`` partitions back as they were at the checkpoint
        (in the table and its changelog), unless their models came from another worker
        (``taken``), or whose log start is unknown or past the checkpoint; note up to where
        their outputs were already sent. Returns the partitions put back."""
        rollback, self.rollback = self.rollback, {}
        table = self.shop.profiles
        topic, incarnation = self.shop.settings.topic_events, self.sources.incarnation
        put_back: dict[int, int] = {}
        replayable = {p for p in self.replay_from if p in self.log_starts} - taken
        for uid, (partition, before) in rollback.items():
            if partition not in assigned or partition not in replayable:
                continue
            now = table.data.get(uid)
            if now == before:
                continue
            if now is not None:
                env = Envelope.from_bytes(now)
                if env.partition != partition:  # moved by `shopstream repartition` since
                    continue
                here = Record(topic, partition, 0, None, None, incarnation=incarnation)
                sent = env.fence(here)
                self.replay_until[partition] = max(self.replay_until.get(partition, -1), sent)
            if before is None:
                if now is not None:
                    del table.data[uid]
            else:
                put(table.data, partition, uid, before)
            table.send_changelog(partition, uid, before, value_serializer="raw")
            put_back[partition] = put_back.get(partition, 0) + 1
        if put_back:
            self.envelopes.clear()
            for partition in put_back:
                self.states.pop(partition, None)
                self.anchors.pop(partition, None)
            log.info("envelopes put back as they were at the checkpoint, per partition: %s; "
                     "read again from %s; outputs already sent up to %s", put_back,
                     self.replay_from, self.replay_until)  # fmt: skip
        return set(put_back)

    def until_key(self, partition: int) -> str:
        topic = self.shop.settings.topic_events
        return key_base(self.shop.settings.redis_prefix) + f"replay-until:{topic}:{partition}"

    async def start_replays(self, assigned: set[int], taken: set[int]) -> None:
        """The first settle after a start: put envelopes back (:meth:`roll_back`) and commit
        the partitions' offsets back to the checkpoint, so that a stop, a crash or a
        rebalance during the re-read resumes it; and, for every assigned partition, take
        the highest offset whose outputs were already sent from Redis (set by whoever put
        envelopes back before), so the batches up to it send nothing again here too."""
        put_back = self.roll_back(assigned, taken) if self.rollback else set()
        again, self.replay_from = self.replay_from, {}
        redis, parts = self.shop.runtime.redis, sorted(assigned)
        if not parts or redis is None:
            return
        keys = [self.until_key(p) for p in parts]
        stored = await self.retry("reading the replays under way", lambda: redis.mget(keys))
        for p, raw in zip(parts, stored, strict=True):
            if raw is not None:
                self.replay_until[p] = max(self.replay_until.get(p, -1), int(raw))
        mine = {self.until_key(p): self.replay_until[p] for p in put_back if p in self.replay_until}
        if mine:
            await self.retry("noting the replays under way", lambda: redis.mset(mine))
        consumer = self.shop.app.consumer
        commit_back = getattr(consumer, "commit_back", None)
        if put_back and commit_back is not None:
            topic = self.shop.settings.topic_events
            await commit_back({TP(topic, p): again[p] for p in put_back})

    async def replay_passed(self, partitions: set[int]) -> None:
        """The re-read of ``partitions`` went past the outputs already sent."""
        for p in partitions:
            self.replay_until.pop(p, None)
        redis = self.shop.runtime.redis
        keys = [self.until_key(p) for p in sorted(partitions)]
        await self.retry("ending the replays", lambda: redis.delete(*keys))

    def keep_replays_in(self, log_starts: dict[int, int]) -> None:
        """A partition whose log no longer holds every record after the checkpoint (a
        checkpoint restored from an old backup, retention) is not read again and its
        envelopes are not put back: that would lose the events of the deleted records."""
        self.log_starts.update(log_starts)
        for partition, start in log_starts.items():
            again = self.replay_from.get(partition)
            if again is not None and start > again:
                log.warning("partition %d: records %d..%d after the model checkpoint are no "
                            "longer in the log; its envelopes stay as they are and the models "
                            "go on without those events", partition, again, start - 1)  # fmt: skip
                del self.replay_from[partition]

    def replayed(self, partition: int, offset: int) -> bool:
        """Whether the record's batch delivered its outputs before the restart."""
        return offset <= self.replay_until.get(partition, -1)

    def models_for(self, partition: int) -> Models:
        """The models of one source partition (each learns only from its partition)."""
        return self.models.get(partition, self.fresh)

    def state_for(self, partition: int) -> ChurnState:
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

    # --- rebalances -----------------------------------------------------------------------
    def on_revoked(self, partitions: Iterable[int]) -> None:
        """Another worker may own these next: rebuild their state from the table if they
        come back."""
        partitions = list(partitions)
        self.reset_state(partitions)
        for partition in partitions:
            self.replay_from.pop(partition, None)
            self.replay_until.pop(partition, None)  # the next owner reads it from Redis

    def reset_state(self, partitions: Iterable[int]) -> None:
        """Drop what memory holds of ``partitions``: rebuilt from the table on next use."""
        self.envelopes.clear()  # rebuilt from the table's bytes (a rebalance is rare)
        for partition in partitions:
            self.states.pop(partition, None)
            self.anchors.pop(partition, None)

    async def check_sources(self, assigned: set[int]) -> None:
        """The topic's identity, fences against log ends, fresh owner tokens."""
        redis, sources = self.shop.runtime.redis, self.sources
        topic = self.shop.settings.topic_events
        await self.retry("checking the topic's identity", lambda: sources.identify(redis))
        if assigned:
            tps = [TP(topic, p) for p in sorted(assigned)]
            ends = await log_ends(self.shop.app.consumer, tps)
            highwaters = {tp.partition: int(end) for tp, end in ends.items()}
            table = self.shop.profiles.data
            await self.retry("checking the fences", lambda: sources.verify(redis, highwaters,
                                                                           table))  # fmt: skip
        await self.retry("claiming the partitions", lambda: sources.claim(redis, assigned))
        log.info("partitions %s of %s (id %s) checked and claimed: owner tokens %s",
                 sorted(assigned), topic, sources.topic_id or "unknown",
                 sources.tokens)  # fmt: skip

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
        if self.handover.enabled:
            for p in self.given - partitions:
                self.models.parts.pop(p, None)  # stored in Redis, at least as new as ours
            self.given = set()
        self.to_settle = set(partitions)

    async def settle(self) -> None:
        """Before the first batch after an assignment (Redis is up by then): check the
        sources and claim the partitions (:class:`~streams.worker.sources.Sources`; raises
        StateDiverged), then store and drop the models of partitions we do not have, take
        newer stored ones of those we have."""
        if self.to_settle is None:
            return
        assigned, self.to_settle = self.to_settle, None
        log.info("settling the assigned partitions %s before their first batch", sorted(assigned))
        redis = self.shop.runtime.redis
        await self.check_sources(assigned)
        await self.tombstones.settle(self.sources.incarnation, assigned)
        if not self.handover.enabled:
            await self.start_replays(assigned, set())
            return
        try:  # retried while Redis is unreachable; any other error must not fail the batch
            released, taken = await self.retry(
                "settling the models of assigned partitions",
                lambda: self.handover.settle(redis, self.models, assigned),
            )
        except Exception:
            log.exception("settling the partition models failed; going on with our copies")
            await self.start_replays(assigned, set())
            return
        await self.start_replays(assigned, set(taken))
        if released:
            log.info("partitions %s: models of partitions owned elsewhere released", released)
        if taken:
            self.models.upgrade(self.fresh)
            log.info("partitions %s: took over the models their previous owner stored", taken)

    def seen(self, partitions: Iterable[int], wall_s: float) -> None:
        """Records of ``partitions`` were just processed: their idle time starts now."""
        for p in partitions:
            state = self.states.get(p)
            if state is not None:
                self.anchors[p] = (wall_s, state.clock_ms)


async def log_ends(consumer: Any, tps: list[TP], timeout_s: float | None = None) -> Any:
    """The log ends of ``tps`` (the consumer's ``highwaters``), asked again with a warning
    each time the broker does not answer within ``timeout_s`` (default
    :data:`LOG_ENDS_TIMEOUT_S`): the first batch after an assignment waits for them, and an
    unanswered request must not hold it up silently (a clean-clone CI run once saw a
    restarted worker process nothing for 90 s, before any of this step's log lines).

    >>> class Slow:
    ...     calls = 0
    ...     async def highwaters(self, *tps):
    ...         Slow.calls += 1
    ...         await asyncio.sleep(3600 if Slow.calls == 1 else 0)
    ...         return {tp: 7 for tp in tps}
    >>> asyncio.run(log_ends(Slow(), [TP("t", 0)], timeout_s=0.01)), Slow.calls
    ({TP(topic='t', partition=0): 7}, 2)
    """
    timeout = LOG_ENDS_TIMEOUT_S if timeout_s is None else timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.wait_for(consumer.highwaters(*tps), timeout)
        except TimeoutError:
            log.warning("the broker did not tell the log ends of partitions %s within %.0f s "
                        "(attempt %d); asking again", [tp.partition for tp in tps], timeout,
                        attempt)  # fmt: skip
