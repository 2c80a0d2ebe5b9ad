"""CPU per event of the batch code with the undo log on and off (issue 15).

Runs the real :class:`~streams.worker.batch.BatchProcessor` over a generated event stream
with in-memory I/O (``tests.support.fakes``: no Kafka, Redis or Faust), one partition,
batches of 500, alternately without ``SHOPSTREAM_CHECKPOINT_KEY`` (no undo log) and with one
(every envelope's first write after a checkpoint appends its old bytes to the log: a
``write`` and ``flush`` per batch), ``--rounds`` times each. One checkpoint halfway (without
a key it does nothing), so only the undo log and that checkpoint differ. Prints CPU µs per
event (``time.process_time``) and the log's size, and checks that both runs stored and
published the same.

    .venv/bin/python scripts/undo_cost.py --users 300 --days 60 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.core.settings import Settings
from streams.tools.generate import generate
from tests.support.fakes import fake_shop, message, new_processor

TOPICS = ("dlq", "recommendations", "churn_alerts", "segments", "anomalies")


def log_bytes(data_dir: str) -> int:
    return sum(p.stat().st_size for p in Path(data_dir).rglob("undo-*.log"))


async def once(key: str, values: list[bytes]) -> tuple[float, int, Any]:
    data_dir = tempfile.mkdtemp(prefix="undo-cost-")
    settings = Settings(
        max_events_per_min=0, retention_days=0, checkpoint_key=key, checkpoint_interval_s=1e9,
        data_dir=data_dir,
    )  # fmt: skip
    shop = fake_shop(settings)
    proc = new_processor(shop)
    msgs = [message(settings.topic_events, 0, n, orjson.loads(v)["user_id"].encode(), v,
                    orjson.loads(v)["ts"] / 1000) for n, v in enumerate(values)]  # fmt: skip
    half = len(msgs) // 1000 * 500
    started = time.process_time()
    for i in range(0, len(msgs), 500):
        await proc.process(msgs[i : i + 500])
        if i + 500 == half:  # from here on the undo log keeps whole envelopes
            await proc.checkpoint()
    cpu = time.process_time() - started
    proc.undo.close()
    size = log_bytes(data_dir)
    outputs = {name: getattr(shop, name).sent for name in TOPICS}
    return cpu / len(msgs) * 1e6, size, (outputs, dict(shop.profiles.data))


async def main(args: argparse.Namespace) -> None:
    events, _ = generate(users=args.users, seed=args.seed, days=args.days)
    values = [orjson.dumps(e) for e in events]
    runs: dict[str, list[float]] = {"off": [], "on": []}
    size, same = 0, True
    for _ in range(args.rounds):
        off, _, a = await once("", values)
        on, size, b = await once("k", values)
        runs["off"].append(off)
        runs["on"].append(on)
        same = same and a == b
    for name, cpus in runs.items():
        print(f"undo log {name:3}: {statistics.median(cpus):6.1f} µs/event (median of "
              f"{len(cpus)}: {', '.join(f'{c:.1f}' for c in cpus)})")
    print(f"{len(values)} events; undo log after the checkpoint {size / 1e6:.2f} MB; "
          f"same outputs and profiles: {same}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
