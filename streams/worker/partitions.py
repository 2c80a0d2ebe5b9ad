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
from streams.domain.churn_state import ChurnConfig, ChurnState, rebuild, track_from_list
from streams.domain.envelope import Envelope
from streams.worker.configs import model_factory
from streams.worker.context import ShopApp
from streams.worker.handover import Handover
from streams.worker.sources import Sources
from streams.worker.tombstones import Tombstones

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
            return
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
