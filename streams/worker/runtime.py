"""Long-lived clients of the worker, owned by a mode service (created on start, closed on stop)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import mode
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from models.similarity import SimilarityStore, key_base
from streams.core.errors import StateDiverged
from streams.core.settings import Settings
from streams.kafka import committed_offsets
from streams.worker.configs import rec_config
from streams.worker.kpi_store import KpiStore, kpi_store
from streams.worker.retry import RETRIABLE, retry_forever
from streams.worker.stopping import stop_now

log = logging.getLogger(__name__)


def redis_client(url: str) -> aioredis.Redis:
    """A Redis client that retries single commands briefly on connection errors.

    Longer outages are handled one level up by :func:`streams.worker.retry.retry_forever`.
    """
    return aioredis.from_url(
        url,
        decode_responses=False,
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
        retry_on_error=list(RETRIABLE),
    )


class Runtime(mode.Service):
    """Holds the Redis client and the similarity store for the agents and views."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._redis: aioredis.Redis | None = None
        self._store: SimilarityStore | None = None
        self._ready = asyncio.Event()
        self.epoch = ""

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("Runtime is not started")
        return self._redis

    @property
    def kpis(self) -> KpiStore:
        """The business figures (:mod:`streams.worker.kpis`)."""
        return kpi_store(self.redis, self.settings)

    @property
    def store(self) -> SimilarityStore:
        if self._store is None:
            raise RuntimeError("Runtime is not started")
        return self._store

    async def on_start(self) -> None:
        self._redis = redis_client(self.settings.redis_url)
        await retry_forever(
            f"connecting to Redis at {self.settings.redis_url.rsplit('@', 1)[-1]}",
            self._redis.ping,
            should_stop=lambda: self.should_stop,
        )
        self._store = SimilarityStore(
            self._redis, prefix=self.settings.redis_prefix, config=rec_config(self.settings)
        )
        try:
            self.epoch = await store_epoch(self._redis, self.settings)
        except StateDiverged as exc:
            stop_now(str(exc))
        self._ready.set()
        log.info("connected to Redis; key prefix %r, store epoch %s", self.settings.redis_prefix,
                 self.epoch)  # fmt: skip

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._redis is not None

    async def wait_ready(self) -> None:
        """Block until Redis is connected.

        Faust starts extra services only after table recovery, while agents may already
        receive records; the agent waits here instead of failing its first batches.
        """
        await self._ready.wait()

    async def on_stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


async def store_epoch(redis: aioredis.Redis, settings: Settings) -> str:
    """The store's epoch: a random id written once, when the store is new.

    A store without one whose consumer group has already committed offsets on the events
    topic has lost its data (Redis restarted without persistence, was flushed, or failed
    over to an empty replica): StateDiverged, the worker refuses to start. Every learn call
    then checks the epoch is still there (``similarity.lua``), so a loss while running stops
    the worker too (docs/reliability.md, "Redis durability").
    """
    key = key_base(settings.redis_prefix) + "epoch"
    epoch = await redis.get(key)
    if epoch is None:
        committed = await committed_offsets(settings)
        if any(offset > 0 for offset in committed.values()):
            raise StateDiverged(
                f"Redis at {settings.redis_url.rsplit('@', 1)[-1]} has no store epoch under "
                f"prefix {settings.redis_prefix!r}, but consumer group {settings.app_id!r} has "
                f"committed offsets {committed} on {settings.topic_events!r}: Redis lost its "
                "data (no persistence, a flush, or a failover to an empty replica). Restore it "
                "from its AOF/RDB, or stop the workers and start over with `shopstream reset "
                "--yes` (docs/reliability.md, 'Redis durability')"
            )
        await redis.set(key, uuid.uuid4().hex, nx=True)
        epoch = await redis.get(key)
    return epoch.decode() if isinstance(epoch, bytes) else str(epoch)
