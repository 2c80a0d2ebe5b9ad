"""Replay a recorded clickstream into ``shop.events``, as fast as possible or at a fixed rate.

Input formats:

* contract JSONL (``*.jsonl``): one event object per line, sent unchanged;
* session TSV (``SessionId ItemId Time``, epoch seconds, as in the YOOCHOOSE files): each
  click becomes a ``view`` event of user = session (these data sets have no user ids).

Records are keyed by ``user_id`` (so a user's events keep their order on one partition).
Lines that cannot be read are counted as errors with their line numbers, never sent silently.

>>> events = tsv_events(["SessionId\\tItemId\\tTime", "7\\t214\\t1396413533.104"], "yc")
>>> next(events)  # doctest: +NORMALIZE_WHITESPACE
{'event_id': 'yc-7-1', 'type': 'view', 'user_id': '7', 'session_id': '7', 'item_id': '214',
 'ts': 1396413533104}
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReplaySummary:
    events: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_lines: list[int] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
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


async def replay(
    settings: Settings,
    path: Path,
    *,
    rate: float | None = None,
    limit: int | None = None,
    topic: str | None = None,
    progress: Any = None,
) -> ReplaySummary:
    """Publish the file to ``topic`` (default: the events topic); open-loop at ``rate`` ev/s."""
    producer = AIOKafkaProducer(
        **client_options(settings), linger_ms=5, max_batch_size=512 * 1024, acks="all"
    )
    await producer.start()
    summary = ReplaySummary()
    topic = topic or settings.topic_events
    pending: list[asyncio.Future[Any]] = []
    start = time.perf_counter()
    try:
        for n, key, value in read_records(path):
            if limit is not None and summary.events >= limit:
                break
            if value is None:
                summary.errors += 1
                summary.error_lines.append(n)
                continue
            if rate:
                ahead = start + summary.events / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            pending.append(await producer.send(topic, value, key=key))
            summary.events += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                if progress is not None:
                    progress(summary.events)
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    summary.seconds = time.perf_counter() - start
    if progress is not None:
        progress(summary.events)
    if summary.errors:
        log.warning(
            "%d unreadable lines skipped (first: %s)", summary.errors, summary.error_lines[:10]
        )
    return summary
