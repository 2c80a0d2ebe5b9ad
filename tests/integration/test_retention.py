"""Bounded state (issue 21): a customer inactive longer than SHOPSTREAM_RETENTION_DAYS (event
time) leaves the profile table with a changelog tombstone and loses their Redis keys; item
neighbour sets carry a TTL renewed on learning; items not seen for SHOPSTREAM_REC_ITEM_TTL_DAYS
are evicted from popularity, categories and neighbours. Fails on the old code (no
retention: the old customer's profile and keys stay forever, item keys have no TTL)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from models.similarity import key_base
from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, consume, produce

T0 = 1_709_283_600_000
DAY = 86_400_000


def event(n: int, user: str, item: str, day: float, kind: str = "view") -> bytes:
    return orjson.dumps({
        "event_id": f"{user}-{n}", "type": kind, "user_id": user,
        "session_id": f"{user}-s{int(day)}",
        "item_id": item, "category": "c", "price": 10.0, "ts": T0 + int(day * DAY),
    })  # fmt: skip


def _status(worker: WorkerProcess, user: str) -> int:
    """The HTTP status of GET /users/{user}: 200, 404, or 409 while the worker's partitions
    are still being assigned (the owner is not known yet)."""
    try:
        worker.get_json(f"/users/{user}")
    except OSError as exc:
        code = getattr(exc, "code", None)
        if isinstance(code, int):
            return code
        raise
    return 200


def _gone(worker: WorkerProcess, user: str) -> bool:
    return _status(worker, user) == 404


async def test_inactive_customers_and_stale_items_are_removed(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    s = settings.with_(retention_days=40.0, retention_interval_s=0.5, rec_item_ttl_days=35.0,
                       rec_half_life_days=5.0,
                       partitions=1)  # fmt: skip
    base = key_base(s.redis_prefix)
    old = [event(i, "old", item, 0.1 * i, kind) for i, (item, kind) in
           enumerate([("gone-a", "view"), ("gone-b", "view"), ("gone-b", "purchase")])]  # fmt: skip
    new = [event(i, "new", f"live-{i % 3}", day) for i, day in enumerate(range(1, 61, 2))]
    await ensure_topics(s)
    with WorkerProcess(s, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(s, [(b"old", e) for e in old])
        deadline = time.monotonic() + 60
        # until all three of the old customer's events are applied (they may come in two
        # batches: the profile exists after the first, the purchase set after the second)
        while time.monotonic() < deadline:
            if _status(worker, "old") == 200 and await redis_client.exists(
                base + "us:old", base + "ub:old"
            ) == 2:
                break
            await asyncio.sleep(0.3)
        assert worker.get_json("/users/old")["user_id"] == "old"
        assert await redis_client.pttl(base + "n:gone-b") > 0  # neighbour sets have a TTL
        assert await redis_client.exists(base + "us:old", base + "ub:old") == 2
        await produce(s, [(b"new", e) for e in new])  # the stream clock moves 60 days on
        deadline, n = time.monotonic() + 60, len(new)
        while time.monotonic() < deadline and not _gone(worker, "old"):
            # sweeps run between batches: live traffic goes on
            await produce(s, [(b"new", event(n, "new", "live-0", 61))])
            n += 1
            time.sleep(0.7)
        assert _gone(worker, "old"), worker.logs()
        assert worker.get_json("/users/new")["user_id"] == "new"
        assert await redis_client.exists(base + "us:old", base + "ub:old") == 0
        assert await redis_client.zscore(base + "pop", "gone-b") is None
        assert await redis_client.hget(base + "cat", "gone-b") is None
        assert await redis_client.exists(base + "n:gone-b") == 0
        assert await redis_client.zscore(base + "pop", "live-1") is not None
        worker.stop()
    changelog = await consume(f"{s.app_id}-profiles-changelog", s,
                              done=lambda rs: any(r.key == b'"old"' and r.value is None
                                                  for r in rs), wait_s=20)  # fmt: skip
    last = [r for r in changelog if r.key == b'"old"'][-1]
    assert last.value is None, "no tombstone for the removed customer"
