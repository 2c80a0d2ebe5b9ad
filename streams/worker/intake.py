"""Intake: raw Kafka records in, valid events and dead letters out.

>>> good = Record("shop.events", 0, 7, b"u1", b'{"event_id":"e","type":"search","user_id":"u1",'
...               b'"session_id":"s","ts":1709283600000}')
>>> bad = Record("shop.events", 0, 8, b"u1", b"{oops")
>>> valid, rejected = split([good, bad], max_bytes=1000)
>>> [(r.offset, e.type) for r, e in valid], [(r.offset, reason) for r, reason, _ in rejected]
([(7, 'search')], [(8, 'not_json')])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from streams.core.events import Event, InvalidEvent, Record, parse_event
from streams.domain.privacy import pseudonymise_event


def to_record(event: Any) -> Record:
    """The parts of a Faust event that processing needs."""
    msg = event.message
    return Record(msg.topic, msg.partition, msg.offset, event.key, event.value)


def split(
    records: Iterable[Record], *, max_bytes: int, pseudonymise_key: bytes = b""
) -> tuple[list[tuple[Record, Event]], list[tuple[Record, str, str]]]:
    """Parse every record: ``(valid [(record, event)], rejected [(record, reason, detail)])``.

    With ``pseudonymise_key``, valid events carry the pseudonym instead of the user id.
    """
    valid: list[tuple[Record, Event]] = []
    rejected: list[tuple[Record, str, str]] = []
    for rec in records:
        try:
            event = parse_event(rec.value, max_bytes=max_bytes)
        except InvalidEvent as exc:
            rejected.append((rec, exc.reason, exc.detail))
            continue
        if pseudonymise_key:
            event = pseudonymise_event(event, pseudonymise_key)
        valid.append((rec, event))
    return valid, rejected


def dlq_headers(rec: Record, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: why, and where the original came from."""
    return [
        ("reason", reason.encode()),
        ("detail", detail.encode("utf-8", "replace")[:1000]),
        ("source_topic", rec.topic.encode()),
        ("source_partition", str(rec.partition).encode()),
        ("source_offset", str(rec.offset).encode()),
    ]


def by_partition(
    valid: Sequence[tuple[Record, Event]],
) -> dict[tuple[str, int], list[tuple[int, Event]]]:
    """Group valid events by source (topic, partition), keeping offset order."""
    groups: dict[tuple[str, int], list[tuple[int, Event]]] = {}
    for rec, ev in valid:
        groups.setdefault((rec.topic, rec.partition), []).append((rec.offset, ev))
    for items in groups.values():
        items.sort(key=lambda pair: pair[0])
    return groups
