"""Intake: raw Kafka records in, valid events and dead letters out.

>>> good = Record("shop.events", 0, 7, b"u1", b'{"event_id":"e","type":"search","user_id":"u1",'
...               b'"session_id":"s","ts":1709283600000}', 1709283600000)
>>> bad = Record("shop.events", 0, 8, b"u1", b"{oops")
>>> ahead = Record("shop.events", 0, 9, b"u1", good.value, 1709283600000 - 2 * 3_600_000)
>>> clock = Clock(now_ms=1709283600000, max_future_ms=3_600_000)
>>> valid, rejected = split([good, bad, ahead], clock)
>>> [(r.offset, e.type) for r, e in valid], [(r.offset, reason) for r, reason, _ in rejected]
([(7, 'search')], [(8, 'not_json'), (9, 'future_ts')])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from streams.core.events import DEFAULT_LIMITS, Event, InvalidEvent, Limits, Record, safe_text
from streams.core.settings import Settings
from streams.core.wire import parse_event
from streams.domain.privacy import pseudonymise_event
from streams.patches.handoff import Piece

log = logging.getLogger(__name__)


def to_record(event: Any, incarnation: str = "") -> Record:
    """The parts of a Faust event that processing needs (Faust's timestamp is in seconds);
    ``incarnation``: the topic's identity (:class:`streams.worker.sources.Sources`)."""
    msg = event.message
    ts = msg.timestamp
    return Record(
        msg.topic, msg.partition, msg.offset, event.key, event.value,
        round(ts * 1000) if ts is not None and ts > 0 else -1, incarnation,
    )  # fmt: skip


def record_from(rec: Any, incarnation: str = "") -> Record:
    """:func:`to_record` of an aiokafka ``ConsumerRecord`` (the batch hand-off,
    streams/patches/handoff.py: no Faust message or event per record; Kafka's timestamp is
    in milliseconds already).

    >>> from types import SimpleNamespace as CR
    >>> record_from(CR(topic="t", partition=1, offset=5, key=b"u", value=b"{}", timestamp=17))
    Record(topic='t', partition=1, offset=5, key=b'u', value=b'{}', timestamp_ms=17, incarnation='')
    """
    ts = rec.timestamp
    return Record(
        rec.topic, rec.partition, rec.offset, rec.key, rec.value,
        ts if ts is not None and ts > 0 else -1, incarnation,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fetched:
    """A batch of the batch hand-off (streams/patches/handoff.py): pieces of partition
    fetches, in the order they are to be processed."""

    pieces: Sequence[Piece]

    def __len__(self) -> int:
        return sum(len(p) for p in self.pieces)

    def records(self, incarnation: str = "") -> list[Record]:
        return [record_from(r, incarnation) for p in self.pieces for r in p.records]


def records_of(batch: Fetched | Sequence[Any], incarnation: str = "") -> list[Record]:
    """The records of a batch of Faust events or of fetches."""
    if isinstance(batch, Fetched):
        return batch.records(incarnation)
    return [to_record(event, incarnation) for event in batch]


def first_of(batch: Fetched | Sequence[Any]) -> Record | None:
    """The first record of a batch (for an error message), ``None`` if empty."""
    if isinstance(batch, Fetched):
        pieces = [p for p in batch.pieces if len(p)]
        return record_from(pieces[0].records[0]) if pieces else None
    return to_record(batch[0]) if batch else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Clock:
    """What event time is checked against: each record's Kafka timestamp (``now_ms``, the
    worker's clock, stands in for a record without one), and how far an event may be
    dated after it (``future_ts``) or before it (``stale_ts``; 0 = any age)."""

    now_ms: int
    max_future_ms: int
    max_past_ms: int = 0

    @classmethod
    def from_settings(cls, s: Settings, now_ms: int) -> Clock:
        return cls(now_ms=now_ms, max_future_ms=s.max_future_ms, max_past_ms=s.max_past_ms)

    def check(self, rec: Record, event: Event) -> None:
        """Raise ``future_ts``/``stale_ts`` when the event's time is not credible."""
        ref = rec.timestamp_ms if rec.timestamp_ms >= 0 else self.now_ms
        if event.ts_ms > ref + self.max_future_ms:
            raise InvalidEvent(
                "future_ts", f"event time is {event.ts_ms - ref} ms after the record's time "
                f"(limit {self.max_future_ms})",
            )  # fmt: skip
        if self.max_past_ms and event.ts_ms < ref - self.max_past_ms:
            raise InvalidEvent(
                "stale_ts", f"event time is {ref - event.ts_ms} ms before the record's time "
                f"(limit {self.max_past_ms})",
            )  # fmt: skip


def check_key(rec: Record, event: Event) -> None:
    """A record's key must be its ``user_id`` (UTF-8): all of a user's events then share a
    partition, which the per-user fence relies on (``key_mismatch`` otherwise)."""
    if rec.key is None or rec.key != event.user_id.encode():
        raise InvalidEvent(
            "key_mismatch", "the record key is not the user_id (a user's events must share "
            "a partition)",
        )  # fmt: skip


def split(
    records: Iterable[Record],
    clock: Clock,
    *,
    limits: Limits = DEFAULT_LIMITS,
    pseudonymise_key: bytes = b"",
) -> tuple[list[tuple[Record, Event]], list[tuple[Record, str, str]]]:
    """Parse every record: ``(valid [(record, event)], rejected [(record, reason, detail)])``.

    No exception escapes: one a record causes beyond the contract's checks (a bug, or input
    no check foresaw) makes that record a ``decode_error``, logged. With
    ``pseudonymise_key``, valid events carry the pseudonym instead of the user id.
    """
    valid: list[tuple[Record, Event]] = []
    rejected: list[tuple[Record, str, str]] = []
    for rec in records:
        try:
            event = parse_event(rec.value, limits=limits)
            check_key(rec, event)
            clock.check(rec, event)
            if pseudonymise_key:
                event = pseudonymise_event(event, pseudonymise_key)
        except InvalidEvent as exc:
            rejected.append((rec, exc.reason, exc.detail))
            continue
        except Exception as exc:  # noqa: BLE001 - one record's problem stays that record's
            detail = safe_text(f"{type(exc).__name__}: {exc}")
            log.error(  # noqa: TRY400 - the record's text never reaches a log unescaped
                "decoding %s[%d]@%d failed: %s", rec.topic, rec.partition, rec.offset, detail
            )
            rejected.append((rec, "decode_error", detail))
            continue
        valid.append((rec, event))
    return valid, rejected


def dlq_headers(rec: Record, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: why, and where the original came from (the detail
    with every non-printable character escaped)."""
    return [
        ("reason", reason.encode()),
        ("detail", safe_text(detail, 1000).encode("utf-8", "replace")[:1000]),
        ("source_topic", rec.topic.encode()),
        ("source_partition", str(rec.partition).encode()),
        ("source_offset", str(rec.offset).encode()),
    ]


def by_partition(
    valid: Sequence[tuple[Record, Event]],
) -> dict[tuple[str, int], list[tuple[int, Event]]]:
    """Group valid events by source (topic with its incarnation, partition), keeping offset
    order."""
    groups: dict[tuple[str, int], list[tuple[int, Event]]] = {}
    for rec, ev in valid:
        groups.setdefault((rec.source, rec.partition), []).append((rec.offset, ev))
    for items in groups.values():
        items.sort(key=lambda pair: pair[0])
    return groups
