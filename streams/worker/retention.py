"""Bounded state: customers inactive longer than ``SHOPSTREAM_RETENTION_DAYS`` are removed,
and items not seen for ``SHOPSTREAM_REC_ITEM_TTL_DAYS`` are evicted from Redis.

Both periods are event time, measured against each partition's stream clock (the newest
event its models have seen), so a replay of years of history at full speed ends with the
same state as live traffic. A removed customer loses what :func:`streams.worker.erasure.forget`
erases, except the models' stored copies: the profile (deleted with a changelog
tombstone, so a restore does not bring it back), the churn track, the model memories
(segments, anomalies), the Redis session and purchase keys and the marker of their last
churn alert. If they come back, they start as a new customer.

A sweep runs between batches (under the batch lock) every ``SHOPSTREAM_RETENTION_INTERVAL_S``
seconds and looks at a bounded slice of the table per batch (:data:`SLICE`), so a table of
millions never holds a batch up for long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from models.similarity import key_base
from models.similarity.retention import evict_stale_items
from streams.domain.alerts import alert_id
from streams.domain.churn_state import track_from_list
from streams.domain.envelope import Envelope
from streams.domain.profile import DAY_MS
from streams.worker.partitions import Partitions

log = logging.getLogger(__name__)

#: Users looked at per batch while a sweep is under way.
SLICE = 5_000


def last_alerted_episode(env: Envelope) -> int:
    """Start of the user's last scored idle episode (its alert's id), or -1.

    >>> from streams.domain.churn_state import Track, track_to_list
    >>> from streams.domain.profile import Profile
    >>> env = Envelope(profile=Profile("u1", first_seen_ms=1, last_seen_ms=9))
    >>> last_alerted_episode(env)
    -1
    >>> env.track = track_to_list(Track(anchor_ms=1, last_seen_ms=9, scored_episode_ms=9))
    >>> last_alerted_episode(env)
    9
    """
    return track_from_list(env.track).scored_episode_ms if env.track else -1


class Retention:
    """Sweeps of the profile table and of the item keys; ``due()`` between batches."""

    def __init__(self, parts: Partitions, clock: Callable[[], float] = time.monotonic) -> None:
        s = parts.shop.settings
        self.parts, self.clock = parts, clock
        self.period_ms = int(s.retention_days * DAY_MS)
        self.item_ttl_days, self.half_life_days = s.rec_item_ttl_days, s.rec_half_life_days
        self.interval_s = s.retention_interval_s
        self.next_at = clock() + self.interval_s
        self.pending: list[str] = []  # users still to look at in the sweep under way
        self.alert_base = key_base(s.redis_prefix) + "alerted:"

    @property
    def enabled(self) -> bool:
        return self.period_ms > 0 or self.item_ttl_days > 0

    def due(self) -> bool:
        return self.enabled and (bool(self.pending) or self.clock() >= self.next_at)

    async def sweep(self) -> dict[str, int]:
        """One slice of the sweep under way (a new sweep starts with the items)."""
        shop = self.parts.shop
        out = {"users": 0, "items": 0}
        if not self.pending:
            self.next_at = self.clock() + self.interval_s
            self.pending = list(shop.profiles.data.keys())
            shop.telemetry.set_profiles(len(self.pending))
            out["items"] = await self._evict_items()
        if self.period_ms > 0:
            chunk, self.pending = self.pending[:SLICE], self.pending[SLICE:]
            expired = self._expired(chunk)
            if expired:
                await self._remove(expired)
                out["users"] = len(expired)
        else:
            self.pending = []
        shop.telemetry.on_retention(out["users"], out["items"])
        if out["users"] or out["items"]:
            log.info("retention: removed %d inactive users, evicted %d stale items",
                     out["users"], out["items"])  # fmt: skip
        return out

    def _expired(self, uids: list[str]) -> list[tuple[str, Envelope]]:
        """The users of ``uids`` (on partitions held here) inactive longer than the period."""
        table, held = self.parts.shop.profiles, self.parts.models.parts
        out = []
        for uid in uids:
            raw = table.data.get(uid)
            if raw is None:
                continue
            env = Envelope.from_bytes(raw)
            models = held.get(env.partition)
            if models is None:
                continue
            if models.stream_time_ms - env.profile.last_seen_ms > self.period_ms:
                out.append((uid, env))
        return out

    async def _remove(self, expired: list[tuple[str, Envelope]]) -> None:
        parts = self.parts
        table = parts.shop.profiles
        for uid, env in expired:
            del table.data[uid]
            table.send_changelog(env.partition, uid, None, value_serializer="raw")
            state = parts.states.get(env.partition)
            if state is not None:
                dict.pop(state.users, uid, None)
            parts.models.forget(uid)
        runtime = parts.shop.runtime
        uids = [uid for uid, _ in expired]
        markers = [self.alert_base + alert_id(uid, episode) for uid, env in expired
                   if (episode := last_alerted_episode(env)) >= 0]  # fmt: skip

        async def forget() -> None:
            await runtime.store.forget_users(uids)
            if markers:  # the marker of their last alert (older ones expire by TTL)
                await runtime.redis.unlink(*markers)

        await parts.retry("removing the Redis keys of inactive users", forget)

    async def _evict_items(self) -> int:
        if self.item_ttl_days <= 0:
            return 0
        runtime = self.parts.shop.runtime
        prefix = self.parts.shop.settings.redis_prefix
        total = 0
        while True:  # bounded: each call evicts at most 1000, stops when none is left
            n: int = await self.parts.retry(
                "evicting stale items",
                lambda: evict_stale_items(
                    runtime.redis, prefix, half_life_days=self.half_life_days,
                    ttl_days=self.item_ttl_days,
                ),
            )  # fmt: skip
            total += n
            if n < 1000:
                return total
