"""Which events get a recommendation, and the ``shop.recommendations`` payload.

>>> views = [Event(f"e{i}", "view", u, "s", t, item_id="i") for i, (u, t) in
...          enumerate([("a", 10), ("b", 20), ("a", 30), ("b", 40)])]
>>> [e.event_id for e in plan_recommendations(views, {"a": -1, "b": 35}.__getitem__, 10)]
['e2']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final

import orjson

from streams.core.events import Event
from streams.core.payloads import Recommendation

#: Types after which a fresh recommendation is published.
REC_TRIGGERS: Final = frozenset({"view", "add_to_cart", "purchase"})
MODEL_NAME: Final = "cooc-session-v1"


def iso_ms(ts_ms: int) -> str:
    """UTC ISO-8601 with milliseconds: ``iso_ms(0) == '1970-01-01T00:00:00.000Z'``."""
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


def recommendation_message(event: Event, items: Sequence[tuple[str, float]]) -> bytes:
    """The ``shop.recommendations`` value for the trigger ``event``."""
    out: Recommendation = {
        "user_id": event.user_id,
        "session_id": event.session_id,
        "items": [{"item_id": i, "score": round(s, 6)} for i, s in items],
        "trigger_event_id": event.event_id,
        "ts": iso_ms(event.ts_ms),
        "model": MODEL_NAME,
    }
    return orjson.dumps(out)


def is_trigger(event: Event) -> bool:
    """Whether ``event`` asks for a fresh recommendation."""
    return event.type in REC_TRIGGERS and event.item_id is not None


def plan_recommendations(
    fresh: Iterable[Event], last_rec_ms: Callable[[str], int], throttle_ms: int
) -> list[Event]:
    """The trigger events to publish recommendations for: each user's last view, add-to-cart
    or purchase of an item among the batch's fresh events, unless the user got one less than
    ``throttle_ms`` of event time before it (``last_rec_ms``: -1 = never)."""
    last: dict[str, Event] = {}
    for event in fresh:
        if is_trigger(event):
            last[event.user_id] = event

    def throttled(event: Event) -> bool:
        prev = last_rec_ms(event.user_id)
        return bool(throttle_ms) and prev >= 0 and event.ts_ms - prev < throttle_ms

    return [event for event in last.values() if not throttled(event)]
