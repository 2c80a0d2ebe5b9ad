"""Planning recommendations (event-time throttle, last trigger per user) and the payload."""

from __future__ import annotations

import orjson

from streams.core.events import Event
from streams.domain.recommendations import (
    arm_model,
    plan_recommendations,
    rec_arm,
    rec_id,
    recommendation_message,
)


def ev(offset: int, user: str = "u1", ts: int = 1_709_283_600_000, etype: str = "view") -> Event:
    return Event(f"e{offset}", etype, user, "s1", ts, item_id=f"i{offset}")  # type: ignore[arg-type]


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
    assert set(msg) == {"user_id", "session_id", "items", "trigger_event_id", "ts", "model",
                        "rec_id", "arm"}  # fmt: skip
    assert msg["rec_id"] == rec_id("u1", "e7") and msg["arm"] == "A"
    assert msg["model"] == "cooc-session-v1"
    # a redelivery re-sends the same bytes: the id and the arm are functions of the input
    assert recommendation_message(ev(7), [("i2", 0.5)]) == recommendation_message(
        ev(7), [("i2", 0.5)]
    )
    b = orjson.loads(recommendation_message(ev(7), [], "B", arm_model({"two_hop": 0})))
    assert (b["arm"], b["model"]) == ("B", "cooc-session-v1+two_hop=0")
    assert msg["items"] == [{"item_id": "i2", "score": 0.5}]
    assert msg["trigger_event_id"] == "e7" and msg["ts"] == "2024-03-01T09:00:00.000Z"


def test_rec_ids_are_deterministic_and_distinct() -> None:
    assert rec_id("u1", "e1") == rec_id("u1", "e1")
    ids = {rec_id(u, e) for u in ("u1", "u2", "u1\x1fe") for e in ("e1", "e2", "")}
    assert len(ids) == 9 and all(len(i) == 32 for i in ids)


def test_arms_are_stable_at_the_share_and_nested() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    for share in (0.1, 0.5):
        in_b = sum(rec_arm(u, share) == "B" for u in users) / len(users)
        assert abs(in_b - share) < 0.015  # ~4 standard errors at n = 20,000
    assert {rec_arm(u, 0.0) for u in users} == {"A"}
    assert {rec_arm(u, 1.0) for u in users} == {"B"}
    # raising the share only moves users from A to B; the same on every call
    assert all(rec_arm(u, 0.5) == "B" for u in users if rec_arm(u, 0.1) == "B")
    assert [rec_arm(u, 0.3) for u in users[:50]] == [rec_arm(u, 0.3) for u in users[:50]]
