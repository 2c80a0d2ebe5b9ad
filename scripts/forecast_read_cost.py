"""The worker's own CPU (this process's, against a real Redis) to read the history of one
forecast tick that finds ``CATCH_UP`` origins due, as a replay's catch-up does: before, each
origin's 182 days read as figures (``KpiStore.days``) and encoded into its request; now, the
store's counters of all of them read once, unparsed (``KpiStore.raw_days``), and each request
built around those bytes (docs/performance.md, "Fifteenth round"). The days are written
under a fresh key prefix (``--categories`` categories sold each day, as the bench's shop) and
deleted afterwards; the median of ``--repeat``.

    PYTHONPATH=. .venv/bin/python scripts/forecast_read_cost.py --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from models.forecast import iso_day
from streams.core.settings import Settings
from streams.domain.forecasts import CATCH_UP, HISTORY_DAYS
from streams.worker.kpi_store import KpiStore

FIRST = 19_800


def counters(day: int, categories: int) -> dict[Any, int]:
    out = {"revenue": 10_000 + day, "s_purchase": 30, "s_cart": 60, "s_view": 400,
           "items": 50, "purchases": 40, "views": 900, "carts": 80,
           "s_cart_purchase": 25}  # fmt: skip
    for c in range(categories):
        out |= {f"views@cat{c}": 90, f"carts@cat{c}": 8, f"purchases@cat{c}": 4,
                f"revenue@cat{c}": 1_000 + c}  # fmt: skip
    for arm in ("knn", "popular"):
        out |= {f"rec_shown@{arm}": 20, f"rec_clicks@{arm}": 3, f"rec_buys@{arm}": 1,
                f"rec_revenue@{arm}": 900}  # fmt: skip
    return out


async def redis_cpu_s(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def cpu_ms(redis: Redis, fn: Callable[[], Awaitable[object]], repeat: int) -> str:
    """The median CPU ms of this process and redis-server's (all its clients') per call."""
    mine, server = [], []
    for _ in range(repeat):
        start, start_server = time.process_time(), await redis_cpu_s(redis)
        await fn()
        mine.append((time.process_time() - start) * 1000)
        server.append((await redis_cpu_s(redis) - start_server) * 1000)
    return f"{statistics.median(mine):.1f} ms (Redis {statistics.median(server):.1f} ms)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--categories", type=int, default=10)
    args = parser.parse_args()
    redis = Redis.from_url(Settings().redis_url)
    kpis = KpiStore(redis, f"fcread-{uuid.uuid4().hex[:8]}", session_ttl_s=60, horizon_ms=1)
    last = FIRST + HISTORY_DAYS + CATCH_UP
    try:
        for n in range(FIRST, last):
            await redis.zadd(kpis.base + "kpi:days", {iso_day(n): 0})
            await redis.hset(kpis.base + "kpi:d:" + iso_day(n),
                             mapping=counters(n, args.categories))  # fmt: skip
        origins = list(range(last - CATCH_UP + 1, last + 1))

        async def per_origin() -> None:
            for o in origins:
                days = await kpis.days(iso_day(o - HISTORY_DAYS), iso_day(o - 1))
                orjson.dumps([days, o, 5])

        async def once() -> None:
            raw = await kpis.raw_days(iso_day(origins[0] - HISTORY_DAYS), iso_day(origins[-1] - 1))
            requests = [b"[%b,%d,%d]" % (raw, o, 5) for o in origins]
            assert len(requests) == CATCH_UP

        before = await cpu_ms(redis, per_origin, args.repeat)
        now = await cpu_ms(redis, once, args.repeat)
        print(f"{CATCH_UP} origins due, {HISTORY_DAYS} days each, {args.categories} categories: "
              f"worker CPU per tick {before} reading one origin at a time as figures, "
              f"{now} reading them once, unparsed")  # fmt: skip
    finally:
        keys = [k async for k in redis.scan_iter(match=kpis.base + "*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
