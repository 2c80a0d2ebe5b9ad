"""Redis CPU per event of the similarity store's batch call, as the worker makes it.

Replays a JSONL file of contract events (default: the bench's generated file) through
``SimilarityStore.learn_and_recommend`` in batches (4 partitions keyed by user, the worker's
``SHOPSTREAM_BATCH_SIZE``, up to ``--due`` recommendations scored per batch: the sessions of
the batch's last item events), against the Redis server of ``SHOPSTREAM_REDIS_URL`` under a
fresh key prefix that is deleted afterwards. Reports redis-server's CPU (``INFO cpu``: user
+ system) per event and per scored recommendation, over ``--rounds`` rounds (the median).
Other clients of the same server add to its CPU: run it on a quiet server. ``--file`` may also
be a YOOCHOOSE-style ``SessionId ItemId Time`` TSV (real clicks: each becomes a ``view``,
in time order; give it twice to join two files, e.g. ``train_tr`` and ``train_valid``).

    PYTHONPATH=. .venv/bin/python scripts/redis_cost.py --events 40000 --rounds 3
    PYTHONPATH=. .venv/bin/python scripts/redis_cost.py --events 70000 --due 0 \
        --file ../shared/data/yoochoose-clicks-100k_train_tr.txt \
        --file ../shared/data/yoochoose-clicks-100k_train_valid.txt
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
import zlib
from pathlib import Path

import orjson
from redis.asyncio import Redis

from models.similarity.store import SimilarityStore
from streams.core.events import Event
from streams.core.settings import Settings
from streams.core.wire import parse_event
from streams.tools.replay import tsv_events
from streams.worker.configs import rec_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / ".stack/bench/events-u1200-s7.jsonl"
PARTITIONS = 4


async def command_calls(redis: Redis) -> Calls:
    """Per command: calls and CPU seconds so far (``INFO commandstats``, Lua's inner calls too)."""
    stats = await redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"]) / 1e6)
        for name, v in stats.items()
    }


async def cpu_s(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


Calls = dict[str, tuple[int, float]]


async def one_round(
    redis: Redis, lines: list[bytes], batch: int, due: int
) -> tuple[float, int, Calls]:
    settings = Settings()
    prefix = f"rcost{uuid.uuid4().hex[:8]}"
    store = SimilarityStore(redis, prefix=prefix, config=rec_config(settings))
    events = [parse_event(line) for line in lines]
    offsets = [0] * PARTITIONS
    scored = 0
    before, before_calls = await cpu_s(redis), await command_calls(redis)
    for start in range(0, len(events), batch):
        groups: dict[tuple[str, int], list[tuple[int, Event]]] = {}
        requests: dict[tuple[str, str], None] = {}
        for ev in events[start : start + batch]:
            p = zlib.crc32(ev.user_id.encode()) % PARTITIONS
            groups.setdefault(("bench", p), []).append((offsets[p], ev))
            offsets[p] += 1
            if ev.item_id and ev.type in ("view", "add_to_cart"):
                requests[ev.user_id, ev.session_id] = None
        wanted = list(requests)[-due:] if due > 0 else []  # [-0:] would be all of them
        scored += len(wanted)
        await store.learn_and_recommend(groups, wanted, settings.rec_k)
    used = await cpu_s(redis) - before
    calls = {
        name: (n - before_calls.get(name, (0, 0.0))[0], cpu - before_calls.get(name, (0, 0.0))[1])
        for name, (n, cpu) in (await command_calls(redis)).items()
    }  # the round's own calls: not the clean-up below
    await store.delete_all()  # its keys are "{prefix}:…": a match on "prefix*" found none
    return used, scored, calls


def read_lines(files: list[Path], limit: int) -> list[bytes]:
    """The first ``limit`` events of ``files`` as JSON lines (TSV clicks joined, in time order)."""
    if files[0].suffix not in (".txt", ".tsv"):
        with files[0].open("rb") as f:
            return [line for _, line in zip(range(limit), f, strict=False)]
    events = []
    for path in files:
        with path.open(encoding="utf-8") as f:
            events += [e for e in tsv_events(f, path.stem[:20]) if e is not None]
    events.sort(key=lambda e: e["ts"])
    return [orjson.dumps(e) for e in events[:limit]]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--file", type=Path, action="append",
        help=f"contract-event JSONL, or a SessionId/ItemId/Time TSV (default {DEFAULT_FILE})",
    )  # fmt: skip
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=Settings().batch_size)
    parser.add_argument("--due", type=int, default=40, help="recommendations scored per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--commands", action="store_true",
        help="also print each Redis command's calls and CPU per event (INFO commandstats)",
    )  # fmt: skip
    args = parser.parse_args()
    lines = read_lines(args.file or [DEFAULT_FILE], args.events)
    redis = Redis.from_url(Settings().redis_url)
    per_event, per_rec = [], []
    totals: dict[str, list[float]] = {}
    for r in range(args.rounds):
        t = time.perf_counter()
        used, scored, calls = await one_round(redis, lines, args.batch, args.due)
        for name, (n, cpu) in calls.items():
            acc = totals.setdefault(name, [0, 0.0])
            acc[0] += n
            acc[1] += cpu
        per_event.append(used / len(lines) * 1e6)
        per_rec.append(used / max(scored, 1) * 1e6)
        per_rec_text = f"{per_rec[-1]:.0f} per scored recommendation, " if scored else ""
        print(f"round {r + 1}: {per_event[-1]:.1f} µs of Redis CPU per event, {per_rec_text}"
              f"{scored} scored, {time.perf_counter() - t:.1f} s")  # fmt: skip
    print(f"median: {statistics.median(per_event):.1f} µs per event over {len(lines)} events")
    if args.commands:
        total = len(lines) * args.rounds
        rows = [(cpu, n, name) for name, (n, cpu) in totals.items() if n > 0]
        print("command          calls/event  µs/event (the command alone; EVALSHA includes all)")
        for cpu, calls, name in sorted(rows, reverse=True):
            print(f"{name:<16} {calls / total:>11.2f}  {cpu / total * 1e6:>8.1f}")
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
