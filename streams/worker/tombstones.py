"""Erasure fences (:mod:`streams.domain.forgotten`) in Redis and in every batch.

``forget`` records them (:meth:`Tombstones.erase`, before the profile is deleted); a worker
loads those of the partitions it is assigned before its first batch (:meth:`Tombstones.settle`)
and drops every event of a forgotten user at or below them (:meth:`Tombstones.screen`, counted
in ``shopstream_erased_dropped_total{kind}``), so nothing of it reaches the table, Redis or an
output topic.

Keys: ``{prefix}:erased:<incarnation>:<partition>``, a sorted set: user digest -> fence offset
(``ZADD GT``: a fence never moves back). Redis is shared by the workers and persistent
(docs/reliability.md), so the fences survive a crash and follow a partition to its next
owner. They have no TTL: a fence is purged once Kafka no longer holds any record it covers
(the partition's first retained offset is past it), checked at every assignment and at every
erasure on the partition; the bound is the events topic's retention plus one segment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from faust.types import TP

from models.similarity import key_base
from streams.core.events import Event, Record
from streams.domain.envelope import Envelope
from streams.domain.forgotten import ErasureFences, erasure_offsets, user_digest
from streams.worker.context import ShopApp

log = logging.getLogger(__name__)
T = TypeVar("T")
Retry = Callable[[str, Callable[[], Awaitable[T]]], Awaitable[T]]

#: Longest an erasure waits for the partition's log end / start from the broker.
OFFSETS_TIMEOUT_S = 10.0


class Tombstones:
    """The erasure fences of one worker: in Redis, and in memory for the partitions held."""

    def __init__(self, shop: ShopApp, retry: Retry[Any]) -> None:
        s = shop.settings
        self.shop, self.retry, self.topic = shop, retry, s.topic_events
        self.base = key_base(s.redis_prefix) + "erased:"
        self.pseudo_key = s.pseudonymise_key.encode()
        self.fences = ErasureFences()

    # --- a batch --------------------------------------------------------------------------
    def screen(
        self, valid: list[tuple[Record, Event]], rejected: list[tuple[Record, str, str]]
    ) -> tuple[list[tuple[Record, Event]], list[tuple[Record, str, str]]]:
        """The batch's valid and rejected records without those of forgotten users at or
        below their erasure fence (counted; nothing in memory is looked up for a partition
        without fences)."""
        if not self.fences.by_source:
            return valid, rejected
        valid, dropped = self.fences.screen(valid)
        rejected, n_rejected = self.fences.screen_rejected(rejected, self.pseudo_key)
        if dropped or n_rejected:
            self.shop.telemetry.on_erased_dropped(len(dropped), n_rejected)
            log.info("dropped %d events and %d rejected records of forgotten users (at or "
                     "below their erasure fence)", len(dropped), n_rejected)  # fmt: skip
        return valid, rejected

    # --- forget ---------------------------------------------------------------------------
    async def erase(self, uid: str, env: Envelope, incarnation: str) -> int:
        """Record the erasure fences of ``uid`` (stored state ``env``) in Redis and in memory;
        returns how many sources were fenced. Called before the profile is deleted, under
        the batch lock (no batch of the partition runs meanwhile)."""
        ends = await self._offsets("log end", [env.partition], latest=True)
        offsets = erasure_offsets(env, incarnation, ends.get(env.partition))
        if not offsets:
            return 0
        digest = user_digest(uid)
        redis = self.shop.runtime.redis

        async def store() -> None:
            pipe = redis.pipeline(transaction=False)
            for source, offset in offsets.items():
                pipe.zadd(self.base + source, {digest: offset}, gt=True)
            await pipe.execute()

        await self.retry("recording the erasure fence", store)
        self.fences.add(digest, offsets)
        await self.purge(incarnation, [env.partition])
        return len(offsets)

    # --- assignment and bound -------------------------------------------------------------
    async def settle(self, incarnation: str, assigned: Collection[int]) -> None:
        """Before the first batch after an assignment: hold exactly the fences of the
        ``assigned`` partitions, then purge those retention made useless."""
        sources = [f"{incarnation}:{p}" for p in sorted(assigned)]
        redis = self.shop.runtime.redis

        async def load() -> list[Any]:
            pipe = redis.pipeline(transaction=False)
            for source in sources:
                pipe.zrange(self.base + source, 0, -1, withscores=True)
            return list(await pipe.execute())

        found = await self.retry("loading the erasure fences", load)
        self.fences.hold({
            source: {_text(d): int(o) for d, o in pairs}
            for source, pairs in zip(sources, found, strict=True)
        })  # fmt: skip
        if self.fences.by_source:
            await self.purge(incarnation, [int(s.rsplit(":", 1)[1]) for s in self.fences.by_source])
            log.info("erasure fences of forgotten users held: %d (partitions %s)",
                     len(self.fences), sorted(assigned))  # fmt: skip

    async def purge(self, incarnation: str, partitions: Collection[int]) -> int:
        """Drop the fences of ``partitions`` that no retained record is at or below (Kafka's
        retention deleted every record they cover). Returns how many were dropped."""
        starts = await self._offsets("log start", partitions, latest=False)
        if not starts:
            return 0
        redis = self.shop.runtime.redis
        sources = {f"{incarnation}:{p}": start for p, start in starts.items()}

        async def drop() -> Sequence[int]:
            pipe = redis.pipeline(transaction=False)
            for source, start in sources.items():
                pipe.zremrangebyscore(self.base + source, "-inf", f"({start}")
            return list(await pipe.execute())

        dropped = sum(int(n) for n in await self.retry("purging erasure fences", drop))
        for source, start in sources.items():
            self.fences.purge(source, start)
        if dropped:
            log.info("erasure fences purged (their records left the log): %d", dropped)
        return dropped

    async def _offsets(
        self, what: str, partitions: Collection[int], *, latest: bool
    ) -> Mapping[int, int]:
        """The log end (``latest``) or start of ``partitions`` ({} if the broker cannot say
        within :data:`OFFSETS_TIMEOUT_S`: an erasure then fences up to the user's own
        offsets, a purge waits for the next chance)."""
        if not partitions:
            return {}
        consumer = self.shop.app.consumer
        tps = [TP(self.topic, p) for p in sorted(partitions)]
        ask = consumer.highwaters if latest else consumer.earliest_offsets
        try:
            found = await asyncio.wait_for(ask(*tps), OFFSETS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the fence still holds the user's offsets
            log.warning("reading the %s of %s for the erasure fences failed: %r", what,
                        [tp.partition for tp in tps], exc)  # fmt: skip
            return {}
        return {tp.partition: int(offset) for tp, offset in found.items() if offset is not None}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


Saved = list[tuple[bytes, list[tuple[bytes, float]]]]


async def save_fences(redis: Any, prefix: str) -> Saved:
    """Every erasure fence under ``prefix`` (``shopstream reset`` keeps them: it replays the
    events topic from its start, where the forgotten users' records still are)."""
    pattern = key_base(prefix) + "erased:*"  # key_base refuses glob characters
    saved: Saved = []
    async for key in redis.scan_iter(match=pattern, count=500):
        saved.append((key, list(await redis.zrange(key, 0, -1, withscores=True))))
    return saved


async def restore_fences(redis: Any, saved: Saved) -> int:
    """Write back what :func:`save_fences` read; returns how many fences."""
    pipe = redis.pipeline(transaction=False)
    for key, pairs in saved:
        if pairs:
            pipe.zadd(key, {member: score for member, score in pairs}, gt=True)
    await pipe.execute()
    return sum(len(pairs) for _, pairs in saved)
