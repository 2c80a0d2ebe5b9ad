"""CPU per event of the batch code, offline: the real BatchProcessor, in-memory I/O.

Generates a storefront (``streams.tools.generate``), feeds it through
``BatchProcessor.process`` in batches of ``--batch`` records (one partition per user hash,
like Kafka), with the Kafka topics, the profile table and Redis replaced by the in-memory
fakes of ``tests/support/fakes.py``, and prints the process CPU time per event (µs) of
several repeats (the best is the least disturbed by other work on the machine).

    .venv/bin/python scripts/batch_cpu.py --users 300 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
import zlib
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.core.settings import Settings
from streams.tools.generate import generate
from streams.worker import heap
from tests.support.fakes import fake_shop, keyed_messages, new_processor


def records(users: int, seed: int, partitions: int) -> list[tuple[int, bytes, bytes]]:
    events, _ = generate(users=users, seed=seed, days=120)
    return [
        (zlib.crc32(e["user_id"].encode()) % partitions, e["user_id"].encode(), orjson.dumps(e))
        for e in events
    ]


async def one_run(recs: list[tuple[int, bytes, bytes]], batch: int, partitions: int) -> float:
    shop = fake_shop(Settings(max_events_per_min=0, partitions=partitions))
    proc = new_processor(shop)
    msgs = keyed_messages(recs, time.time())
    started = time.process_time()
    for i in range(0, len(msgs), batch):
        await proc.process(msgs[i : i + batch])
    return (time.process_time() - started) / len(msgs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--young", type=int, default=heap.YOUNG_THRESHOLD,
                        help="young-generation GC threshold (the worker's; CPython's is 700)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    recs = records(args.users, args.seed, args.partitions)
    heap.settle(args.young)  # as `shopstream worker` does
    collections, gc_s = [0, 0, 0], [0.0, 0.0, 0.0]
    started = [0.0]

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections[info["generation"]] += 1
            gc_s[info["generation"]] += time.perf_counter() - started[0]

    gc.callbacks.append(count)
    runs = [
        asyncio.run(one_run(recs, args.batch, args.partitions)) for _ in range(args.repeat)
    ]
    gc.callbacks.remove(count)
    print(
        f"{len(recs)} events, batches of {args.batch}, {args.partitions} partitions: "
        f"CPU per event best {min(runs):.1f} us, median {statistics.median(runs):.1f} us "
        f"(runs: {', '.join(f'{r:.1f}' for r in runs)}); cyclic GC (young threshold "
        f"{args.young}) per run: {'/'.join(f'{n / args.repeat:.1f}' for n in collections)} "
        f"collections of generation 0/1/2, {sum(gc_s) / args.repeat / len(recs) * 1e6:.1f} us "
        f"per event; a full one {gc_s[2] * 1e3 / max(collections[2], 1):.1f} ms on average"
    )


if __name__ == "__main__":
    main()
