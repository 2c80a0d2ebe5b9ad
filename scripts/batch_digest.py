"""A digest of everything the batch code produces for a generated shop, to check that a
change meant only to be faster changes no output: run it on two checkouts and compare.

Feeds ``streams.tools.generate`` events through the real ``BatchProcessor`` with in-memory
I/O (``tests/support/fakes.py``), in batches of ``--batch``, one partition per user hash,
and prints, per output topic, the number of records and a hash of their keys, values and
headers, then a hash of the profile table and of the similarity store's state.

    .venv/bin/python scripts/batch_digest.py > /tmp/after.txt
    (cd ../other-checkout && /path/to/.venv/bin/python scripts/batch_digest.py) > /tmp/before.txt
    diff /tmp/before.txt /tmp/after.txt
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import zlib
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.core.settings import Settings
from streams.tools.generate import generate
from tests.support.fakes import fake_shop, keyed_messages, new_processor

TOPICS = ("dlq", "recommendations", "churn_alerts", "segments", "anomalies", "kpis",
          "alert_outcomes")  # fmt: skip
#: A fixed Kafka timestamp for every record (the digest must not depend on the clock).
NOW_S = 1_800_000_000.0


def digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


async def run(users: int, seed: int, days: int, batch: int, partitions: int) -> list[str]:
    events, _ = generate(users=users, seed=seed, days=days, bots=3)  # bots: anomalies
    shop = fake_shop(Settings(
        max_events_per_min=0, partitions=partitions, churn_min_labels=0, churn_min_customers=5,
        churn_alert_max_age_days=0,  # a replay of old events: publish its alerts too
    ))  # fmt: skip
    proc = new_processor(shop)
    msgs = keyed_messages(
        [(zlib.crc32(e["user_id"].encode()) % partitions, e["user_id"].encode(), orjson.dumps(e))
         for e in events],
        NOW_S,
    )  # fmt: skip
    for i in range(0, len(msgs), batch):
        await proc.process(msgs[i : i + batch])
    lines = [f"events {len(msgs)}"]
    for name in TOPICS:
        sent = getattr(shop, name).sent
        lines.append(f"{name} {len(sent)} {digest(sent)}")
    profiles = sorted(shop.profiles.data.items())
    lines.append(f"profiles {len(profiles)} {digest(profiles)}")
    lines.append(f"store {digest(vars(shop.runtime.store))}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    for line in asyncio.run(run(args.users, args.seed, args.days, args.batch, args.partitions)):
        print(line)


if __name__ == "__main__":
    main()
