"""Pure batch logic: splitting, DLQ headers, offset fencing of profiles, throttling."""

from __future__ import annotations

import orjson

from streams.events import Event
from streams.pipeline import (
    Envelope,
    Record,
    by_partition,
    dlq_headers,
    is_redelivery,
    plan_recommendations,
    recommendation_message,
    split,
)
from streams.profile import update_profile


def ev(offset: int, user: str = "u1", ts: int = 1_709_283_600_000, etype: str = "view") -> Event:
    return Event(f"e{offset}", etype, user, "s1", ts, item_id=f"i{offset}")  # type: ignore[arg-type]


def test_split_keeps_valid_and_explains_rejects() -> None:
    good = Record("t", 1, 10, b"u1", ev(10).to_json())
    bad = Record("t", 1, 11, b"u1", b"\x00garbage")
    valid, rejected = split([good, bad], max_bytes=10_000)
    assert [r.offset for r, _ in valid] == [10]
    assert [(r.offset, reason) for r, reason, _ in rejected] == [(11, "not_json")]
    headers = dict(dlq_headers(bad, "not_json", "detail"))
    assert headers == {
        "reason": b"not_json",
        "detail": b"detail",
        "source_topic": b"t",
        "source_partition": b"1",
        "source_offset": b"11",
    }


def test_by_partition_orders_by_offset() -> None:
    a, b, c = (Record("t", p, o, None, None) for p, o in [(0, 5), (1, 2), (0, 3)])
    groups = by_partition([(a, ev(5)), (b, ev(2)), (c, ev(3))])
    assert [o for o, _ in groups[("t", 0)]] == [3, 5]
    assert [o for o, _ in groups[("t", 1)]] == [2]


def envelope(offset: int, *events: Event) -> Envelope:
    profile = None
    for e in events:
        profile = update_profile(profile, e)
    assert profile is not None
    return Envelope(
        profile, offset, events[-1].session_id, partition=0, segment="new", track=[1],
        recent=["a1b2c3"], rate=[28_488_061, 3],
    )  # fmt: skip


def test_user_state_is_fenced_by_offset() -> None:
    env = envelope(2, ev(1), ev(2, ts=1_709_283_700_000))
    # Redelivery of offsets 1 and 2 after a crash: recognised, so nothing is applied twice.
    assert is_redelivery(env, 1) and is_redelivery(env, 2)
    assert not is_redelivery(env, 3) and not is_redelivery(None, 0)
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_throttle_uses_event_time() -> None:
    last = {"u1": 1_000_000, "u2": -1}.__getitem__  # u2 never got one
    soon, later = ev(2, ts=1_000_500), ev(3, ts=1_002_000)
    assert plan_recommendations([soon], last, throttle_ms=1000) == []
    assert plan_recommendations([later], last, throttle_ms=1000) == [later]
    assert plan_recommendations([soon], last, throttle_ms=0) == [soon]
    first = ev(4, user="u2", ts=1_000_400)
    assert plan_recommendations([first, soon], last, throttle_ms=1000) == [first]


def test_only_the_last_trigger_of_a_user_counts_and_searches_do_not_trigger() -> None:
    search = Event("e9", "search", "u1", "s1", 1_002_500, query="socks")
    cart = ev(5, ts=1_002_100, etype="add_to_cart")
    picked = plan_recommendations([ev(3, ts=1_002_000), cart, search], lambda u: -1, 1000)
    assert picked == [cart]


def test_recommendation_message_follows_the_contract() -> None:
    msg = orjson.loads(recommendation_message(ev(7), [("i2", 0.5)]))
    assert set(msg) == {"user_id", "session_id", "items", "trigger_event_id", "ts", "model"}
    assert msg["items"] == [{"item_id": "i2", "score": 0.5}]
    assert msg["trigger_event_id"] == "e7" and msg["ts"] == "2024-03-01T09:00:00.000Z"


def test_pseudonymisation_replaces_the_user_id_before_anything_else() -> None:
    rec = Record("t", 0, 1, b"u1", ev(1).to_json())
    (_, plain), = split([rec], max_bytes=10_000)[0]
    (_, hidden), = split([rec], max_bytes=10_000, pseudonymise_key=b"secret")[0]
    assert plain.user_id == "u1"
    assert hidden.user_id.startswith("p_") and "u1" not in hidden.user_id
    assert hidden.session_id == plain.session_id and hidden.item_id == plain.item_id
