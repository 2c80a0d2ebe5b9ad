"""Delivery time of one producer batch handed over open vs closed (docs/performance.md,
"Eighth round: sends that waited the linger").

aiokafka holds an open batch for the producer's linger in case ``send`` adds records, and
``flush`` does not cut that short; a closed batch is sent at once. Sends ``--batches``
batches of 100 records each way, alternating, to a throwaway topic of the broker in
``SHOPSTREAM_KAFKA_BOOTSTRAP``, and prints the median and 90th percentile per delivery.

    PYTHONPATH=. .venv/bin/python scripts/linger_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from aiokafka import AIOKafkaProducer

from streams.core.settings import Settings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--linger-ms", type=int, default=Settings().producer_linger_ms)
    args = parser.parse_args()
    topic = f"linger-cost-{uuid.uuid4().hex[:8]}"  # auto-created by a development broker
    producer = AIOKafkaProducer(bootstrap_servers=Settings().kafka_bootstrap,
                                linger_ms=args.linger_ms)  # fmt: skip
    await producer.start()
    try:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.batches):
            for close in (False, True):
                t = time.perf_counter()
                batch = producer.create_batch()
                for _ in range(100):
                    batch.append(timestamp=None, key=b"k", value=b"v" * 100)
                if close:
                    batch.close()
                await (await producer.send_batch(batch, topic, partition=0))
                times[close].append((time.perf_counter() - t) * 1000)
    finally:
        await producer.stop()
    for close, ms in times.items():
        ms.sort()
        print(f"{'closed' if close else 'open  '}: median {statistics.median(ms):.2f} ms, "
              f"p90 {ms[int(len(ms) * 0.9) - 1]:.2f} ms per delivery (linger {args.linger_ms} ms)")


if __name__ == "__main__":
    asyncio.run(main())
