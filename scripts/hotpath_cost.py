"""CPU per event of the batch code with live envelopes on and off (issue 20, step 2).

Runs the real :class:`~streams.worker.batch.BatchProcessor` over a generated event stream
with in-memory I/O (``tests.support.fakes``: no Kafka, Redis or Faust, so only our own
per-event code is measured), in batches of ``--batch`` records on ``--partitions``
partitions (users spread by the CRC32 of their id), alternately with
``SHOPSTREAM_LIVE_ENVELOPES=0`` (every envelope decoded from bytes in every batch) and the
default, ``--rounds`` times each (rate limit and retention off; record time = event time,
so a run does not depend on the wall clock). Prints CPU µs per event
(``time.process_time``), the changelog records written per event, and whether the last
runs of both published and stored the same.

    .venv/bin/python scripts/hotpath_cost.py --users 400 --events 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.core.settings import Settings
from streams.tools.generate import generate
from tests.support.fakes import fake_shop, message, new_processor

TOPICS = ("dlq", "recommendations", "churn_alerts", "segments", "anomalies")


async def once(live: int, values: list[bytes], args: argparse.Namespace) -> tuple[Any, ...]:
    shop = fake_shop(Settings(live_envelopes=live, max_events_per_min=0, retention_days=0))
    proc = new_processor(shop)
    offsets = [0] * args.partitions
    msgs = []
    for value in values:
        event = orjson.loads(value)
        uid = event["user_id"].encode()
        p = zlib.crc32(uid) % args.partitions
        # the record time is the event's: a run does not depend on the wall clock
        msgs.append(message("events", p, offsets[p], uid, value, event["ts"] / 1000))
        offsets[p] += 1
    started = time.process_time()
    for i in range(0, len(msgs), args.batch):
        await proc.process(msgs[i : i + args.batch])
    cpu = time.process_time() - started
    outputs = {name: getattr(shop, name).sent for name in TOPICS}
    table: Any = shop.profiles
    return cpu / len(msgs) * 1e6, len(table.changelog) / len(msgs), outputs, dict(table.data)


async def main(args: argparse.Namespace) -> None:
    events, _ = generate(users=args.users, seed=args.seed, days=args.days)
    values = [orjson.dumps(e) for e in events[: args.events]]
    costs: dict[int, list[float]] = {0: [], 50_000: []}
    results: dict[int, tuple[Any, ...]] = {}
    for _ in range(args.rounds):
        for live in costs:
            cost, changelog, outputs, table = await once(live, values, args)
            costs[live].append(cost)
            results[live] = (changelog, outputs, table)
    for live, runs in costs.items():
        print(f"live_envelopes={live:<7d} {statistics.median(runs):6.1f} µs CPU per event "
              f"(rounds: {', '.join(f'{c:.1f}' for c in runs)}); changelog records per event "
              f"{results[live][0]:.3f}")  # fmt: skip
    same = results[0][1:] == results[50_000][1:]
    print(f"{len(values)} events; outputs and table identical both ways: {same}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
