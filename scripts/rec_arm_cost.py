"""What the recommendation experiment's second call costs a batch (docs/recommendations.md).

A store learns 20,000 generated clicks (2,500 sessions, 2,000 items); then, 20 times each,
100 sessions are scored as the worker does without an experiment (all in the learning call,
``learn_and_recommend``) and with half of them in arm B (50 in that call, 50 in a second,
read-only ``recommend_many`` with ``{"two_hop": 0}``). Prints the medians. Needs Redis
(``make up``); uses a private key prefix and deletes it.

    PYTHONPATH=. .venv/bin/python scripts/rec_arm_cost.py [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from types import SimpleNamespace

import redis.asyncio as aioredis

from models.similarity import SimilarityStore, delete_prefix, scoring_variant
from streams.core.settings import Settings
from streams.worker.configs import rec_config

T0 = 1_700_000_000_000


async def main(url: str) -> None:
    r = aioredis.Redis.from_url(url)
    prefix = "bench-arms-" + uuid.uuid4().hex[:8]
    store = SimilarityStore(r, prefix=prefix, config=rec_config(Settings()))
    try:
        rng = random.Random(1)
        clicks = [(n, SimpleNamespace(type="view", user_id=f"u{n // 8}", session_id=f"s{n // 8}",
                                      item_id=f"i{rng.randrange(2000)}", category=None,
                                      ts_ms=T0 + n * 1000)) for n in range(20_000)]  # fmt: skip
        for j in range(0, len(clicks), 500):
            await store.apply_many({("t", 0): clicks[j : j + 500]})
        variant = scoring_variant(store.config, {"two_hop": 0.0})
        reqs = [(f"u{s}", f"s{s}") for s in range(0, 2500, 25)]
        one, two = [], []
        for _ in range(20):
            t = time.perf_counter()
            await store.learn_and_recommend({}, reqs, 10)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            await store.learn_and_recommend({}, reqs[:50], 10)
            await store.recommend_many(reqs[50:], 10, variant)
            two.append(time.perf_counter() - t)
        print(f"100 sessions scored, no experiment (one call): median "
              f"{1000 * statistics.median(one):.1f} ms; 50 in A + 50 in B (two calls): "
              f"{1000 * statistics.median(two):.1f} ms")  # fmt: skip
    finally:
        await delete_prefix(r, prefix)
        await r.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(p.parse_args().redis_url))
