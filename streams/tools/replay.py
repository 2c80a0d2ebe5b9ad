"""Replay a recorded clickstream into ``shop.events``: for demos and for load tests.

Input formats:

* contract JSONL (``*.jsonl``): one event object per line, sent unchanged;
* Segment/RudderStack calls in JSON lines (``{"type": "track", "event": "Product Viewed",
  ...}``): mapped onto the contract (:mod:`streams.domain.segment`), ignored calls skipped;
* session TSV (``SessionId ItemId Time``, epoch seconds, as in the YOOCHOOSE files): each
  click becomes a ``view`` event of user = session (these data sets have no user ids).

Pacing: as fast as possible (default), open-loop at a fixed ``rate`` (events/s), or
time-scaled event time (``speed=1000`` replays an hour of event time in 3.6 s).

Records are keyed by ``user_id`` (so a user's events keep their order on one partition).
With several producer tasks, users are partitioned across tasks by a hash of the key, so each
user's events still leave in file order. Lines that cannot be read are counted as errors with
their line numbers, never sent silently.

Faults for load and robustness tests are injected on the way (:mod:`streams.tools.faults`).

>>> events = tsv_events(["SessionId\\tItemId\\tTime", "7\\t214\\t1396413533.104"], "yc")
>>> next(events)  # doctest: +NORMALIZE_WHITESPACE
{'event_id': 'yc-7-1', 'type': 'view', 'user_id': '7', 'session_id': '7', 'item_id': '214',
 'ts': 1396413533104}
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
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.core.errors import InputError
from streams.core.events import InvalidEvent
from streams.core.settings import Settings
from streams.domain.segment import from_segment, is_segment
from streams.kafka import client_options
from streams.tools.faults import Faults, Outgoing, inject

log = logging.getLogger(__name__)


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
                obj = orjson.loads(raw)
                if is_segment(obj):
                    yield from _segment_records(n, obj)
                    continue
                yield n, str(obj["user_id"]).encode(), raw
            except (orjson.JSONDecodeError, KeyError, TypeError):
                yield n, None, None


FileRecord = tuple[int, bytes | None, bytes | None]


def _segment_records(n: int, call: dict[str, Any]) -> Iterator[FileRecord]:
    """The contract events of a Segment/RudderStack call (none for an ignored call; an
    identify link needs the collector: it is ignored here)."""
    try:
        events = from_segment(call).events
    except InvalidEvent:
        yield n, None, None
        return
    for event in events:
        yield n, str(event["user_id"]).encode(), orjson.dumps(event)


def check_format(path: Path, sample: int = 20) -> None:
    """Raise :class:`InputError` unless one of the first ``sample`` records is readable
    (a file in the wrong format fails before anything is sent)."""
    seen = 0
    for _, key, _value in read_records(path):
        if key is not None:
            return
        seen += 1
        if seen >= sample:
            break
    if seen:
        kind = "TSV (SessionId<TAB>ItemId<TAB>Time)" if path.suffix in {".txt", ".tsv"} else (
            "JSON lines of contract events (each with a user_id)"
        )
        raise InputError(f"{path}: none of the first {seen} records is readable; expected {kind}")
    raise InputError(f"{path}: no records")


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


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
    records: Iterable[tuple[int, bytes | None, bytes | None]] | None = None,
) -> ReplaySummary:
    """Publish the file to ``topic`` (default: the events topic).

    Open-loop at ``rate`` events/s, or at ``speed`` times event time, or as fast as possible.
    ``limit`` counts records read from the file (injected duplicates come on top).
    ``on_send(value, wall_time_s)`` is called as each record is handed to the producer.
    ``records`` (``(line, key, value)``, as :func:`read_records` yields them) are sent
    instead of the file's (``shopstream import orders`` hands its converted events here).
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
    try:
        for client in clients:
            await client.start()
    except BaseException:
        for client in clients:
            await client.stop()
        raise

    def readable() -> Iterator[tuple[bytes, bytes]]:
        read = 0
        for n, key, value in read_records(path) if records is None else records:
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
