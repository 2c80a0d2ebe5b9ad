"""Replay a recorded clickstream into ``shop.events``: for demos and for load tests.

Input formats:

* contract JSONL (``*.jsonl``): one event object per line, sent unchanged;
* session TSV (``SessionId ItemId Time``, epoch seconds, as in the YOOCHOOSE files): each
  click becomes a ``view`` event of user = session (these data sets have no user ids).

Pacing: as fast as possible (default), open-loop at a fixed ``rate`` (events/s), or
time-scaled event time (``speed=1000`` replays an hour of event time in 3.6 s).

Records are keyed by ``user_id`` (so a user's events keep their order on one partition).
With several producer tasks, users are partitioned across tasks by a hash of the key, so each
user's events still leave in file order. Lines that cannot be read are counted as errors with
their line numbers, never sent silently.

Fault injection for load and robustness tests (all deterministic given ``seed``): duplicates
(the same record twice), out-of-order (a record held back behind a few later ones), late
events (event time shifted back by hours) and malformed records (garbage bytes, wrong types,
bad UTF-8, non-objects: the worker must send them to the DLQ).

>>> events = tsv_events(["SessionId\\tItemId\\tTime", "7\\t214\\t1396413533.104"], "yc")
>>> next(events)  # doctest: +NORMALIZE_WHITESPACE
{'event_id': 'yc-7-1', 'type': 'view', 'user_id': '7', 'session_id': '7', 'item_id': '214',
 'ts': 1396413533104}
>>> recs = [(b"u1", b'{"user_id":"u1","ts":1700000000000}')] * 4
>>> out = list(inject(recs, Faults(duplicates=1.0), random.Random(1)))
>>> len(out), [kind for _, _, _, kind in out]
(8, ['', 'duplicate', '', 'duplicate', '', 'duplicate', '', 'duplicate'])
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

#: ``(key, value, event_ts_ms or None, injected kind or "")``
Outgoing = tuple[bytes, bytes, int | None, str]


@dataclass(frozen=True, slots=True)
class Faults:
    """Fractions (0..1) of records to disturb; all zero = the file as it is."""

    duplicates: float = 0.0
    out_of_order: float = 0.0
    late: float = 0.0
    late_hours: float = 6.0
    malformed: float = 0.0
    #: An out-of-order record is held back behind up to this many later records.
    max_delay: int = 20

    def __post_init__(self) -> None:
        for name in ("duplicates", "out_of_order", "late", "malformed"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1]")
        if self.max_delay < 1:
            raise ValueError("max_delay must be at least 1")

    @property
    def any(self) -> bool:
        return bool(self.duplicates or self.out_of_order or self.late or self.malformed)


@dataclass(slots=True)
class ReplaySummary:
    events: int = 0
    errors: int = 0
    send_errors: int = 0
    seconds: float = 0.0
    producers: int = 1
    error_lines: list[int] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "errors": self.errors,
            "send_errors": self.send_errors,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "producers": self.producers,
            "injected": {
                k: self.injected.get(k, 0)
                for k in ("duplicate", "out_of_order", "late", "malformed")
            },
            "first_error_lines": self.error_lines[:10],
        }


def tsv_events(lines: Iterable[str], source: str) -> Iterator[dict[str, Any] | None]:
    """Contract events from ``SessionId ItemId Time`` lines; ``None`` for a malformed line."""
    for n, line in enumerate(lines):
        parts = line.rstrip("\n").split("\t")
        if n == 0 and parts[0] == "SessionId":
            continue
        try:
            session, item, ts = parts[0], parts[1], float(parts[2])
        except (IndexError, ValueError):
            yield None
            continue
        yield {
            "event_id": f"{source}-{session}-{n}",
            "type": "view",
            "user_id": session,
            "session_id": session,
            "item_id": item,
            "ts": round(ts * 1000),
        }


def read_records(path: Path) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    """``(line_number, key, value)`` for every record of the file; key/value ``None`` if bad."""
    with path.open("rb") as fh:
        if path.suffix in {".txt", ".tsv"}:
            lines = (raw.decode("utf-8", "replace") for raw in fh)
            for n, obj in enumerate(tsv_events(lines, path.stem), start=1):
                if obj is None:
                    yield n, None, None
                else:
                    yield n, obj["user_id"].encode(), orjson.dumps(obj)
            return
        for n, raw in enumerate(fh, start=1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                user = orjson.loads(raw)["user_id"]
                yield n, str(user).encode(), raw
            except (orjson.JSONDecodeError, KeyError, TypeError):
                yield n, None, None


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def event_ts_ms(value: bytes) -> int | None:
    """The event time of a contract record in epoch ms, or ``None`` if it has none.

    >>> event_ts_ms(b'{"ts": "2024-01-01T00:00:00+00:00"}'), event_ts_ms(b'{"ts": 5}')
    (1704067200000, 5)
    """
    try:
        ts = orjson.loads(value).get("ts")
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            return int(ts)
        if isinstance(ts, str):
            return int(datetime.fromisoformat(ts).timestamp() * 1000)
    except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
        return None
    return None


def shift_back(value: bytes, hours: float) -> bytes:
    """The record with its ``ts`` moved ``hours`` into the past (same format: ms or ISO).

    >>> shift_back(b'{"ts":7200000}', 1.0)
    b'{"ts":3600000}'
    >>> shift_back(b'{"ts":"2024-01-01T10:00:00+01:00"}', 2.0)
    b'{"ts":"2024-01-01T08:00:00+01:00"}'
    """
    obj = orjson.loads(value)
    ts = obj["ts"]
    if isinstance(ts, str):
        obj["ts"] = (datetime.fromisoformat(ts) - timedelta(hours=hours)).isoformat()
    else:
        obj["ts"] = ts - round(hours * 3_600_000)
    return orjson.dumps(obj)


def malformed(value: bytes, rng: random.Random) -> bytes:
    """Garbage in place of a record: every variant breaks the contract in a different way."""
    variant = rng.randrange(6)
    if variant == 0:  # bad UTF-8
        return b"\xff\xfe\xfa" + value[: len(value) // 2]
    if variant == 1:  # truncated: not JSON
        return value[: max(1, len(value) // 2)]
    if variant == 2:  # valid JSON, not an object
        return b"[1, 2, 3]"
    if variant == 3:  # wrong types
        obj = orjson.loads(value)
        obj["event_id"] = rng.randrange(1_000_000)
        return orjson.dumps(obj)
    if variant == 4:  # absurd timestamp
        obj = orjson.loads(value)
        obj["ts"] = "not a time"
        return orjson.dumps(obj)
    return bytes(rng.randrange(256) for _ in range(24))  # random bytes


def inject(
    records: Iterable[tuple[bytes, bytes]], faults: Faults, rng: random.Random
) -> Iterator[Outgoing]:
    """Apply ``faults`` to ``(key, value)`` records; yields ``(key, value, ts, kind)``.

    ``ts`` is the event time of the original record (for time-scaled replay); ``kind`` names
    the injected fault (``""`` for an unchanged record).
    """
    held: list[tuple[int, Outgoing]] = []  # (release after this many more records, record)
    for key, value in records:
        ts = event_ts_ms(value)
        kind = ""
        if faults.malformed and rng.random() < faults.malformed:
            # never also duplicated or held back: each one is exactly one DLQ record
            yield (key, malformed(value, rng), ts, "malformed")
            continue
        if faults.late and ts is not None and rng.random() < faults.late:
            value, kind = shift_back(value, faults.late_hours), "late"
        out: Outgoing = (key, value, ts, kind)
        if faults.out_of_order and rng.random() < faults.out_of_order:
            held.append((rng.randint(1, faults.max_delay), (key, out[1], ts, "out_of_order")))
            continue
        yield out
        if faults.duplicates and rng.random() < faults.duplicates:
            yield (key, out[1], ts, "duplicate")
        if held:
            due = [h for h in held if h[0] <= 1]
            held = [(n - 1, rec) for n, rec in held if n > 1]
            for _, rec in due:
                yield rec
    for _, rec in held:
        yield rec


def task_of(key: bytes, producers: int) -> int:
    """Stable producer task of a key (crc32), so each user's records stay in order."""
    return zlib.crc32(key) % producers


async def replay(
    settings: Settings,
    path: Path,
    *,
    rate: float | None = None,
    limit: int | None = None,
    topic: str | None = None,
    progress: Any = None,
    speed: float | None = None,
    producers: int = 1,
    faults: Faults | None = None,
    seed: int = 0,
    on_send: Callable[[bytes, float], None] | None = None,
    linger_ms: int = 5,
) -> ReplaySummary:
    """Publish the file to ``topic`` (default: the events topic).

    Open-loop at ``rate`` events/s, or at ``speed`` times event time, or as fast as possible.
    ``limit`` counts records read from the file (injected duplicates come on top).
    ``on_send(value, wall_time_s)`` is called as each record is handed to the producer.
    """
    if rate and speed:
        raise ValueError("use either rate or speed, not both")
    if producers < 1:
        raise ValueError("producers must be at least 1")
    faults = faults or Faults()
    rng = random.Random(seed)  # noqa: S311  # reproducible test data, not crypto
    summary = ReplaySummary(producers=producers)
    topic = topic or settings.topic_events
    queues: list[asyncio.Queue[Outgoing | None]] = [
        asyncio.Queue(maxsize=4096) for _ in range(producers)
    ]
    clients = [
        AIOKafkaProducer(
            **client_options(settings),
            linger_ms=linger_ms,
            max_batch_size=512 * 1024,
            acks="all",
        )
        for _ in range(producers)
    ]
    for client in clients:
        await client.start()

    def readable() -> Iterator[tuple[bytes, bytes]]:
        read = 0
        for n, key, value in read_records(path):
            if limit is not None and read >= limit:
                return
            read += 1
            if key is None or value is None:
                summary.errors += 1
                summary.error_lines.append(n)
                continue
            yield key, value

    async def send_loop(client: AIOKafkaProducer, queue: asyncio.Queue[Outgoing | None]) -> None:
        pending: list[asyncio.Future[Any]] = []
        while (item := await queue.get()) is not None:
            key, value = item[0], item[1]
            if on_send is not None:
                on_send(value, time.time())
            pending.append(await client.send(topic, value, key=key))
            if len(pending) >= 2000:
                await _settle(pending, summary)
        await _settle(pending, summary)
        await client.flush()

    start = time.perf_counter()
    senders = [asyncio.create_task(send_loop(c, q)) for c, q in zip(clients, queues, strict=True)]
    try:
        first_ts: int | None = None
        for key, value, ts, kind in inject(readable(), faults, rng):
            due: float | None = None
            if rate:
                due = start + summary.events / rate
            elif speed and ts is not None:
                first_ts = ts if first_ts is None else first_ts
                due = start + max(0, ts - first_ts) / 1000 / speed
            if due is not None and (ahead := due - time.perf_counter()) > 0:
                await asyncio.sleep(ahead)
            await queues[task_of(key, producers)].put((key, value, ts, kind))
            summary.events += 1
            if kind:
                summary.injected[kind] += 1
            if progress is not None and summary.events % 2000 == 0:
                progress(summary.events)
        for queue in queues:
            await queue.put(None)
        await asyncio.gather(*senders)
    finally:
        for task in senders:
            task.cancel()
        for client in clients:
            await client.stop()
    summary.seconds = time.perf_counter() - start
    if progress is not None:
        progress(summary.events)
    if summary.errors:
        log.warning(
            "%d unreadable lines skipped (first: %s)", summary.errors, summary.error_lines[:10]
        )
    if summary.send_errors:
        log.error("%d records could not be delivered", summary.send_errors)
    return summary


async def _settle(pending: list[asyncio.Future[Any]], summary: ReplaySummary) -> None:
    for result in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(result, BaseException):
            summary.send_errors += 1
    pending.clear()
