"""How many event-loop turns redis-py needs before a script call is on the wire.

The worker starts the batch's similarity call as a task, yields a few times, then updates
profiles on the CPU while Redis works (streams/worker/batch.py). This measures the wall time of
(call + 30 ms of CPU work) after 0..8 ``sleep(0)`` turns: when the call went out before the
CPU work, the total drops to about the call alone. Needs Redis (``make up``); uses a private
key prefix and deletes it.

    .venv/bin/python scripts/redis_overlap.py [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import redis.asyncio as aioredis

from models.similarity import SimilarityStore
from streams.core.events import Event
from streams.core.settings import Settings
from streams.worker.configs import rec_config


async def main(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    config = rec_config(Settings())
    store = SimilarityStore(client, prefix=f"overlap-{uuid.uuid4().hex[:6]}", config=config)
    offset = 0

    def batch() -> dict[tuple[str, int], list[tuple[int, Event]]]:
        nonlocal offset
        out = []
        for _ in range(400):
            offset += 1
            user = f"u{offset % 50}"
            ts = 1_700_000_000_000 + offset * 1000
            out.append(
                (
                    offset,
                    Event(f"e{offset}", "view", user, user, ts, item_id=f"i{offset * 7 % 300}"),
                )
            )
        return {("t", 0): out}

    try:
        await store.apply_many(batch())  # warm up: script loaded, keys exist
        started = time.perf_counter()
        await store.apply_many(batch())
        print(f"call alone: {1000 * (time.perf_counter() - started):.1f} ms")
        for turns in (0, 1, 2, 3, 5, 8):
            times = []
            for _ in range(5):
                b = batch()
                started = time.perf_counter()
                task = asyncio.ensure_future(store.apply_many(b))
                for _ in range(turns):
                    await asyncio.sleep(0)
                busy = time.perf_counter()
                while time.perf_counter() - busy < 0.03:  # the profile updates
                    pass
                await task
                times.append(1000 * (time.perf_counter() - started))
            print(
                f"{turns} turns: call + 30 ms CPU = " + " ".join(f"{t:.1f}" for t in times) + " ms"
            )
    finally:
        await store.delete_all()
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(parser.parse_args().redis_url))
