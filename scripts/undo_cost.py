"""CPU per event of the batch code with the undo hashes on and off (issue 15).

Runs the real
:class:`~streams.worker.batch.BatchProcessor` over a generated event stream with in-memory
topics and table (``tests.support.fakes``: no Kafka or Faust) and a real redis-server of its
own (started on a free loopback port and stopped at the end, so that nothing else's commands
count) for what the undo store and the ownership checks do; one partition, batches of 500,
alternately without ``SHOPSTREAM_CHECKPOINT_KEY`` (no undo hash, no stored models) and with
one (every envelope's first write after the models were stored is kept in the partition's
undo hash: one ``EVAL`` per batch), ``--rounds`` times each. One checkpoint halfway, which
with a key also stores the partition's models in Redis. Prints the worker's CPU µs per event
(``time.process_time``), Redis's (``INFO cpu`` before and after) and the hash's size, and
checks that both runs stored and published the same.

    .venv/bin/python scripts/undo_cost.py --users 300 --days 60 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.similarity import key_base
from streams.core.settings import Settings
from streams.tools.generate import generate
from tests.support.fakes import assign, fake_shop, message, new_processor
from tests.support.worker import free_port

TOPICS = ("dlq", "recommendations", "churn_alerts", "segments", "anomalies")


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def once(key: str, values: list[bytes], url: str) -> tuple[float, float, int, Any]:
    settings = Settings(
        max_events_per_min=0, retention_days=0, checkpoint_key=key, checkpoint_interval_s=1e9,
        data_dir=tempfile.mkdtemp(prefix="undo-cost-"), redis_url=url,
        redis_prefix=f"undo-cost-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    client = aioredis.from_url(url)
    shop = fake_shop(settings)
    proc = new_processor(shop)
    await assign(proc, client)
    msgs = [message(settings.topic_events, 0, n, orjson.loads(v)["user_id"].encode(), v,
                    orjson.loads(v)["ts"] / 1000) for n, v in enumerate(values)]  # fmt: skip
    half = len(msgs) // 1000 * 500
    server = await redis_cpu(client)
    started = time.process_time()
    for i in range(0, len(msgs), 500):
        await proc.process(msgs[i : i + 500])
        if i + 500 == half:  # from here on the undo hash keeps whole envelopes
            await proc.checkpoint()
    cpu = time.process_time() - started
    server = await redis_cpu(client) - server
    undo = proc.parts.undo.hash_key(0)
    size = int(await client.memory_usage(undo, samples=0) or 0) if key else 0
    keys = [k async for k in client.scan_iter(match=key_base(settings.redis_prefix) + "*")]
    if keys:
        await client.unlink(*keys)
    await client.aclose()
    outputs = {name: getattr(shop, name).sent for name in TOPICS}
    per = 1e6 / len(msgs)
    return cpu * per, server * per, size, (outputs, dict(shop.profiles.data))


def main(args: argparse.Namespace) -> None:
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        asyncio.run(measure(args, f"redis://127.0.0.1:{port}/0"))
    finally:
        server.terminate()
        server.wait(10)


async def measure(args: argparse.Namespace, url: str) -> None:
    events, _ = generate(users=args.users, seed=args.seed, days=args.days)
    values = [orjson.dumps(e) for e in events]
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    size, same = 0, True
    for _ in range(args.rounds):
        off, off_redis, _, a = await once("", values, url)
        on, on_redis, size, b = await once("k", values, url)
        runs["off"].append((off, off_redis))
        runs["on"].append((on, on_redis))
        same = same and a == b
    for name, cpus in runs.items():
        worker = [c for c, _ in cpus]
        print(f"undo hashes {name:3}: worker {statistics.median(worker):6.1f} µs/event, Redis "
              f"{statistics.median(r for _, r in cpus):5.1f} µs/event (medians of {len(cpus)}; "
              f"worker: {', '.join(f'{c:.1f}' for c in worker)})")
    print(f"{len(values)} events; undo hash after the checkpoint {size / 1e6:.2f} MB; "
          f"same outputs and profiles: {same}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())
