"""CPU cost per record of the worker's two ways to produce (issue 20, step 1), in-process.

Builds the real app (``streams.app.create_app``) on fresh topics of the local broker, starts
only its producer, and produces the same records both ways, alternately, in rounds:

* outputs: batches of ``--per-batch`` records through :class:`streams.worker.publish.Outbox`
  (``Topic.send`` each, or ``send_batches``), delivered before the next batch;
* changelog: the same count of envelopes through ``send_changelog`` (``send_soon``) each, or
  ``Table.send_changelog_batch``, then ``producer.flush()`` (what Faust does before a commit).

CPU time of this process (``time.process_time``: the producer's network I/O runs in it too)
per record, median of the rounds. ``SHOPSTREAM_STACK_DIR`` / ``SHOPSTREAM_KAFKA_BOOTSTRAP``
as for the tests.

    .venv/bin/python scripts/produce_cost.py --batches 200 --per-batch 40 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from streams.app import create_app
from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.worker.publish import Outbox


async def outputs(shop: Any, batched: bool, batches: int, per: int, value: bytes) -> float:
    started = time.process_time()
    for b in range(batches):
        box = Outbox(shop.app if batched else None)
        for i in range(per):
            await box.send(shop.recommendations, f"u{(b * per + i) % 997}".encode(), value)
        await box.delivered()
    return (time.process_time() - started) / (batches * per) * 1e6


async def changelog(shop: Any, batched: bool, batches: int, per: int, value: bytes) -> float:
    table, partitions = shop.profiles, shop.settings.partitions
    started = time.process_time()
    for b in range(batches):
        records = [((b + i) % partitions, f"u{(b * per + i) % 997}", value) for i in range(per)]
        if batched:
            await table.send_changelog_batch(records)
        else:
            for p, k, v in records:
                table.send_changelog(p, k, v)
        await shop.app.producer.flush()
    return (time.process_time() - started) / (batches * per) * 1e6


async def main(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings().with_(
        app_id=f"producecost-{tag}", topic_recommendations=f"producecost-{tag}.recs",
        topic_events=f"producecost-{tag}.events", topic_dlq=f"producecost-{tag}.dlq",
        topic_churn_alerts=f"producecost-{tag}.alerts", topic_segments=f"producecost-{tag}.seg",
        topic_anomalies=f"producecost-{tag}.anom", partitions=4,
    )  # fmt: skip
    await ensure_topics(settings)
    shop = create_app(settings)
    await shop.app.producer.start()
    value = b"x" * args.value_bytes
    try:
        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, fn in (("outputs", outputs), ("changelog", changelog)):
                for batched in (False, True):
                    key = f"{name} {'batched' if batched else 'one by one'}"
                    cost = await fn(shop, batched, args.batches, args.per_batch, value)
                    results.setdefault(key, []).append(cost)
        for key, costs in results.items():
            print(f"{key:24s} {statistics.median(costs):6.1f} µs CPU per record "
                  f"(rounds: {', '.join(f'{c:.1f}' for c in costs)})")  # fmt: skip
    finally:
        await shop.app.producer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--value-bytes", type=int, default=600)
    asyncio.run(main(parser.parse_args()))
