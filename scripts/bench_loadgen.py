"""make bench, part 3: a load generator that costs a few µs of CPU per event.

The events are read and encoded once, before the clock starts: each contract JSON line
becomes ``(partition, key, value)`` with the partition of Kafka's default partitioner
(murmur2 of the ``user_id`` key, as ``shopstream replay`` and every aiokafka/Faust producer
compute it), so the worker sees the same partitions and per-user order. A ``--limit`` over
the file's length plays it again: each pass moves event time on by the file's span and gives
the events new ids (:func:`again`), so a latency run lasts the seconds it was asked for
whatever the file holds. Sending then only
appends the ready bytes to one aiokafka batch per partition (``create_batch``/``send_batch``)
and awaits the deliveries once at the end: no per-event ``await``, JSON or future.

Open-loop pacing: the events due by then (``rate`` x elapsed) leave together every 5-20 ms
(about 64 events per wake-up: a wake-up of the event loop costs more CPU than 64 appends);
the wall time at which each group left is recorded for the latency matching.

Run as a process (the bench pins it to a core and reads its CPU), it prints one JSON object:
events, seconds, send errors, its own CPU seconds and µs per event while sending (``cpu_s``,
``cpu_us_per_event``; the one-off encoding is ``prepare_us_per_event``), and ``sent``: the
``[event_id, unix time]`` of every event::

    python scripts/bench_loadgen.py FILE.jsonl --topic T --partitions 4 --rate 2000 --limit 60000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.core.settings import Settings
from streams.kafka import client_options

# A wake-up of the event loop costs ~100-200 µs of CPU on the shared box: wake every 5-20 ms,
# for ~64 events per wake-up when the rate allows.
TICK_S, TICK_MAX_S, TICK_EVENTS = 0.005, 0.02, 64


@dataclass(slots=True)
class Prepared:
    """Encoded events in file order: partition, key and value bytes, event id."""

    parts: list[int] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.values)


def prepare(lines: list[bytes], partitions: int, limit: int = 0) -> Prepared:
    """Key (``user_id``) and partition of each contract JSON line, ready to send: the first
    ``limit`` events (0: all), the file played again as often as ``limit`` needs
    (:func:`again`).

    >>> p = prepare([b'{"event_id":"e1","user_id":"u7"}\\n'], 4)
    >>> p.keys, p.ids, p.values, p.parts == [DefaultPartitioner()(b"u7", [0, 1, 2, 3], None)]
    ([b'u7'], ['e1'], [b'{"event_id":"e1","user_id":"u7"}'], True)
    >>> prepare([b'{"event_id":"e1","user_id":"u7","ts":5}'], 4, limit=3).ids
    ['e1', 'e1~1', 'e1~2']
    """
    started = time.process_time()
    out = Prepared()
    every = list(range(partitions))
    partition = DefaultPartitioner()
    values = [v for v in (line.strip() for line in lines) if v]
    objs = [orjson.loads(v) for v in values]
    span = again_span(objs)
    for i in range(limit or len(objs)):
        obj, k = objs[i % len(objs)], i // len(objs)
        value = values[i % len(objs)]
        if k:
            obj = again(obj, k, span)
            value = orjson.dumps(obj)
        key = str(obj["user_id"]).encode()
        out.parts.append(partition(key, every, None))
        out.keys.append(key)
        out.values.append(value)
        out.ids.append(str(obj["event_id"]))
    out.seconds = time.process_time() - started
    return out


def again_span(objs: list[dict[str, Any]]) -> int:
    """How far (ms) a pass of the file moves event time: its span plus a second, so pass
    ``k + 1`` starts after pass ``k`` ends and event time only moves forward.

    >>> again_span([{"ts": 1_000}, {"ts": 61_000}])
    61000
    """
    times = [int(o["ts"]) for o in objs if isinstance(o.get("ts"), int)]
    return (max(times) - min(times) + 1_000) if times else 0


def again(obj: dict[str, Any], k: int, span: int) -> dict[str, Any]:
    """Pass ``k`` of an event when the file is played again: the same user (so the same
    partition and per-user order), event time ``k`` spans later, and new event and session
    ids (the worker drops an event id it has seen, and a session does not span passes;
    ``shopstream generate`` writes no ``~`` in an id, so a suffixed id is new).

    >>> again({"event_id": "e1", "session_id": "s1", "user_id": "u7", "ts": 5}, 2, 100)
    {'event_id': 'e1~2', 'session_id': 's1~2', 'user_id': 'u7', 'ts': 205}
    """
    out = dict(obj)
    out["event_id"] = f"{obj['event_id']}~{k}"
    if "session_id" in obj:
        out["session_id"] = f"{obj['session_id']}~{k}"
    if isinstance(obj.get("ts"), int):
        out["ts"] = obj["ts"] + k * span
    return out


async def offer(
    producer: AIOKafkaProducer, topic: str, events: Prepared, rate: float = 0.0
) -> dict[str, Any]:
    """Send every event (open-loop at ``rate`` events/s, or as fast as possible if 0).

    Returns the counts, the CPU of this process while sending and the send marks
    ``[(first index, end index, unix time), ...]``.
    """
    n = len(events)
    parts, keys, values = events.parts, events.keys, events.values
    marks: list[tuple[int, int, float]] = []
    futures: list[asyncio.Future[Any]] = []
    tick = min(TICK_MAX_S, max(TICK_S, TICK_EVENTS / rate)) if rate > 0 else 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    i = 0
    while i < n:
        if rate > 0:
            elapsed = time.perf_counter() - t0
            due = min(n, int(elapsed * rate) + 1)
            if due <= i:
                await asyncio.sleep(max(tick, (i + 1) / rate - elapsed))
                continue
        else:
            due = min(n, i + 4096)  # let the sender run between chunks
        batches: dict[int, Any] = {}
        for j in range(i, due):
            p = parts[j]
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=keys[j], value=values[j], timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(key=keys[j], value=values[j], timestamp=None)
        for p, batch in batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=p))
        marks.append((i, due, time.time()))
        i = due
        if rate <= 0:
            await asyncio.sleep(0)
    results = await asyncio.gather(*futures, return_exceptions=True)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "eps": round(n / seconds, 1) if seconds > 0 else None,
        "send_errors": sum(isinstance(r, BaseException) for r in results),
        "cpu_s": round(cpu, 4),
        "cpu_us_per_event": round(1e6 * cpu / max(n, 1), 2),
        "prepare_us_per_event": round(1e6 * events.seconds / max(n, 1), 2),
        "marks": marks,
    }


def producer_for(settings: Settings) -> AIOKafkaProducer:
    """The worker's producer settings (streams/app.py): linger, batch size, acks=all."""
    return AIOKafkaProducer(
        **client_options(settings),
        linger_ms=settings.producer_linger_ms,
        max_batch_size=settings.producer_max_batch_bytes,
        acks="all",
    )


async def send_file(
    settings: Settings, path: Path, topic: str, rate: float = 0.0, limit: int = 0
) -> dict[str, Any]:
    lines = (await asyncio.to_thread(path.read_bytes)).splitlines()
    events = prepare(lines, settings.partitions, limit)
    producer = producer_for(settings)
    await producer.start()
    try:
        result = await offer(producer, topic, events, rate)
    finally:
        await producer.stop()
    marks = result.pop("marks")
    result["sent"] = [[events.ids[j], at] for a, b, at in marks for j in range(a, b)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = flat out")
    parser.add_argument(
        "--limit", type=int, default=0, help="N events (0: the file once; more: played again)"
    )
    args = parser.parse_args()
    settings = Settings.from_env().with_(partitions=args.partitions)
    result = asyncio.run(send_file(settings, args.file, args.topic, args.rate, args.limit))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
