"""Which events get a recommendation, and the ``shop.recommendations`` payload: its
deterministic ``rec_id`` and the experiment ``arm`` of its user (docs/recommendations.md).

>>> rec_id("u1", "e1"), rec_arm("u6", 0.5), rec_arm("u6", 0.0)
('ae86a5c351f039b34f045d659f3d64b4', 'B', 'A')
>>> arm_model({"two_hop": 0.0, "alpha": 0.25})
'cooc-session-v1+alpha=0.25,two_hop=0'
>>> views = [Event(f"e{i}", "view", u, "s", t, item_id="i") for i, (u, t) in
...          enumerate([("a", 10), ("b", 20), ("a", 30), ("b", 40)])]
>>> [e.event_id for e in plan_recommendations(views, {"a": -1, "b": 35}.__getitem__, 10)]
['e2']
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import orjson

from streams.core.events import Event
from streams.core.payloads import RecArm, Recommendation

#: Types after which a fresh recommendation is published.
REC_TRIGGERS: Final = frozenset({"view", "add_to_cart", "purchase"})
MODEL_NAME: Final = "cooc-session-v1"


def iso_ms(ts_ms: int) -> str:
    """UTC ISO-8601 with milliseconds: ``iso_ms(0) == '1970-01-01T00:00:00.000Z'``."""
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


def rec_id(user_id: str, trigger_event_id: str) -> str:
    """The recommendation's id: a hash of its user and trigger event, so a redelivered batch
    re-sends the same id (consumers de-duplicate on it; feedback events carry it back)."""
    return hashlib.sha256(f"rec\x1f{user_id}\x1f{trigger_event_id}".encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=16_384)  # asked per recommendation and per feedback event
def rec_arm(user_id: str, b_share: float) -> RecArm:
    """The user's experiment arm: ``B`` for a ``b_share`` of users (a salted hash of the id:
    as good as random, the same on every worker and in every replay; raising the share only
    moves users from A to B), ``A`` otherwise."""
    if not b_share > 0.0:  # no experiment (nan too: no hash is below it)
        return "A"
    digest = hashlib.sha256(f"rec-arm\x1f{user_id}".encode()).digest()
    return "B" if int.from_bytes(digest[:8], "big") < b_share * 2**64 else "A"


def arm_model(overrides: Mapping[str, float]) -> str:
    """The ``model`` of an arm: the scorer's name and the setting's overrides, if any."""
    if not overrides:
        return MODEL_NAME
    return MODEL_NAME + "+" + ",".join(f"{k}={v:g}" for k, v in sorted(overrides.items()))


def recommendation_message(
    event: Event, items: Sequence[tuple[str, float]], arm: RecArm = "A", model: str = MODEL_NAME
) -> bytes:
    """The ``shop.recommendations`` value for the trigger ``event``."""
    out: Recommendation = {
        "user_id": event.user_id,
        "session_id": event.session_id,
        "items": [{"item_id": i, "score": round(s, 6)} for i, s in items],
        "trigger_event_id": event.event_id,
        "ts": iso_ms(event.ts_ms),
        "model": model,
        "rec_id": rec_id(event.user_id, event.event_id),
        "arm": arm,
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
