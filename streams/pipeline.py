"""Pure pieces of batch processing: split raw records, fence profile updates, shape outputs.

The agent (``streams/agents/events.py``) only moves data between Kafka, Redis and these
functions, so everything here is tested without a broker.

>>> good = Record("shop.events", 0, 7, b"u1", b'{"event_id":"e","type":"search","user_id":"u1",'
...               b'"session_id":"s","ts":1709283600000}')
>>> bad = Record("shop.events", 0, 8, b"u1", b"{oops")
>>> valid, rejected = split([good, bad], max_bytes=1000)
>>> [(r.offset, e.type) for r, e in valid], [(r.offset, reason) for r, reason, _ in rejected]
([(7, 'search')], [(8, 'not_json')])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.events import Event, InvalidEvent, parse_event
from streams.privacy import pseudonymise_event
from streams.profile import Profile

#: Types after which a fresh recommendation is published.
REC_TRIGGERS = frozenset({"view", "add_to_cart", "purchase"})
MODEL_NAME = "cooc-session-v1"


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, reduced to what processing needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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


@dataclass(slots=True)
class Envelope:
    """What the profile table stores per user: the profile, its offset fence and context.

    ``offset`` is the source offset of the last event applied; a user's events all live on
    one partition (the key is ``user_id``), so a redelivered event has ``offset <= this``.
    ``track`` is the user's churn bookkeeping (``streams.churn.track_to_list``), stored here
    so it is written, fenced and restored together with the profile.
    """

    profile: Profile
    offset: int = -1
    session_id: str = ""
    last_rec_ms: int = -1
    partition: int = -1
    segment: str | None = None
    track: list[Any] | None = None
    recent: list[str] = field(default_factory=list)  # digests of the last event ids applied
    rate: list[int] = field(default_factory=list)  # [event-time minute, events in it]

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "o": self.offset,
                "s": self.session_id,
                "r": self.last_rec_ms,
                "pt": self.partition,
                "sg": self.segment,
                "t": self.track,
                "e": self.recent,
                "rt": self.rate,
                "p": self.profile,  # orjson serialises the dataclass natively
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        d = orjson.loads(raw)
        profile = Profile.from_dict(d["p"])
        return cls(
            profile,
            d["o"],
            d["s"],
            d["r"],
            d.get("pt", -1),
            d.get("sg"),
            d.get("t"),
            d.get("e", []),
            d.get("rt", []),
        )


def is_redelivery(env: Envelope | None, offset: int) -> bool:
    """Whether the event at ``offset`` was already applied to this user's state.

    >>> from streams.profile import update_profile
    >>> env = Envelope(update_profile(None, Event("e", "search", "u", "s", 0)), offset=5)
    >>> is_redelivery(None, 0), is_redelivery(env, 5), is_redelivery(env, 6)
    (False, True, False)
    """
    return env is not None and offset <= env.offset


def iso_ms(ts_ms: int) -> str:
    """UTC ISO-8601 with milliseconds: ``iso_ms(0) == '1970-01-01T00:00:00.000Z'``."""
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


def recommendation_message(event: Event, items: Sequence[tuple[str, float]]) -> bytes:
    """The ``shop.recommendations`` value (DESIGN §1)."""
    out: dict[str, Any] = {
        "user_id": event.user_id,
        "session_id": event.session_id,
        "items": [{"item_id": i, "score": round(s, 6)} for i, s in items],
        "trigger_event_id": event.event_id,
        "ts": iso_ms(event.ts_ms),
        "model": MODEL_NAME,
    }
    return orjson.dumps(out)


def plan_recommendations(
    fresh: Iterable[Event], last_rec_ms: Callable[[str], int], throttle_ms: int
) -> list[Event]:
    """The trigger events to publish recommendations for: each user's last view, add-to-cart
    or purchase of an item among the batch's fresh events, unless the user got one less than
    ``throttle_ms`` of event time before it (``last_rec_ms``: -1 = never).

    >>> views = [Event(f"e{i}", "view", u, "s", t, item_id="i") for i, (u, t) in
    ...          enumerate([("a", 10), ("b", 20), ("a", 30), ("b", 40)])]
    >>> [e.event_id for e in plan_recommendations(views, {"a": -1, "b": 35}.__getitem__, 10)]
    ['e2']
    """
    last: dict[str, Event] = {}
    for event in fresh:
        if event.type in REC_TRIGGERS and event.item_id is not None:
            last[event.user_id] = event

    def throttled(event: Event) -> bool:
        prev = last_rec_ms(event.user_id)
        return bool(throttle_ms) and prev >= 0 and event.ts_ms - prev < throttle_ms

    return [event for event in last.values() if not throttled(event)]
