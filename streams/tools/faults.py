"""Fault injection for load and robustness tests (all deterministic given a seed).

Duplicates (the same record twice), out-of-order (a record held back behind a few later
ones), late events (event time shifted back by hours) and malformed records (garbage bytes,
wrong types, bad UTF-8, non-objects: the worker must send them to the DLQ).

>>> recs = [(b"u1", b'{"user_id":"u1","ts":1700000000000}')] * 4
>>> out = list(inject(recs, Faults(duplicates=1.0), random.Random(1)))
>>> len(out), [kind for _, _, _, kind in out]
(8, ['', 'duplicate', '', 'duplicate', '', 'duplicate', '', 'duplicate'])
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

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
