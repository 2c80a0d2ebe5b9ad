"""Anomaly flags on a generated storefront with injected bots, big orders and odd prices."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import replace
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from models.anomaly import AnomalyDetector, _User, _user_from_dict, _user_to_dict
from streams.core.events import Event, validate
from streams.core.payloads import Anomaly
from streams.core.settings import Settings
from streams.domain.outputs import anomaly_id, anomaly_message
from streams.tools.generate import generate
from streams.worker.configs import anomaly_config


def detector(**overrides: Any) -> AnomalyDetector:
    """The worker's detector (its settings' defaults), with ``overrides``."""
    return AnomalyDetector(replace(anomaly_config(Settings()), **overrides))


def observe(d: AnomalyDetector, e: Event) -> list[Anomaly]:
    """What the worker publishes for ``e``."""
    return [anomaly_message(e, flag) for flag in d.observe(e)]

BOTS = ("bot-burst", "bot-nodwell", "bot-crawler")


def bot_events(t0: int) -> list[dict[str, Any]]:
    """Three kinds of bots: a fast burst, views without dwell, a slow catalogue crawler."""
    out: list[dict[str, Any]] = []

    def add(user: str, n: int, step_ms: int, item: Any) -> None:
        for i in range(n):
            out.append(
                {
                    "event_id": f"{user}-{i}",
                    "type": "view",
                    "user_id": user,
                    "session_id": f"{user}-s",
                    "item_id": item(i),
                    "ts": t0 + i * step_ms,
                }
            )

    add("bot-burst", 200, 1_100, lambda i: f"i00{i % 5:03d}")  # 5 items, 55 a minute
    add("bot-nodwell", 60, 700, lambda i: f"i01{i % 30:03d}")  # 0.7 s per view
    add("bot-crawler", 150, 3_000, lambda i: f"i{i // 40:02d}{i % 40:03d}")  # every item once
    return out


@functools.cache
def stream() -> tuple[list[Event], list[dict[str, Any]]]:
    events, _ = generate(users=300, seed=11, days=45)
    t0 = events[len(events) // 2]["ts"]
    rows = sorted(events + bot_events(t0), key=lambda e: (e["ts"], e["event_id"]))
    parsed = [validate(r) for r in rows]
    d = detector()
    flags = [a for e in parsed for a in observe(d, e)]
    return parsed, flags


def test_injected_bots_are_flagged_and_real_customers_are_not() -> None:
    parsed, flags = stream()
    bot_flags = {a["user_id"] for a in flags if a["kind"] == "bot"}
    assert bot_flags == set(BOTS)
    wrong = [a for a in flags if not a["user_id"].startswith("bot") and a["kind"] == "bot"]
    assert wrong == []
    # Very few flags of any kind on genuine customers.
    genuine = {e.user_id for e in parsed if not e.user_id.startswith("bot")}
    flagged = {a["user_id"] for a in flags if not a["user_id"].startswith("bot")}
    assert len(flagged) <= 0.02 * len(genuine), flags


def test_each_flag_says_why_and_carries_the_contract_fields() -> None:
    _, flags = stream()
    reasons = {a["user_id"]: a["reason"] for a in flags if a["kind"] == "bot"}
    assert "events within 60 s" in reasons["bot-burst"]
    assert "lasted under 1000 ms" in reasons["bot-nodwell"]
    assert "distinct items in 10 min" in reasons["bot-crawler"]
    for a in flags:
        assert set(a) == {"anomaly_id", "user_id", "kind", "score", "reason", "event_id", "ts"}
        assert 0.0 <= a["score"] <= 1.0
        assert a["anomaly_id"] == anomaly_id(a["user_id"], a["kind"], a["event_id"])
        assert orjson.loads(orjson.dumps(a)) == a


def test_detection_is_deterministic() -> None:
    parsed, flags = stream()
    d = detector()
    assert [a for e in parsed for a in observe(d, e)] == flags


def test_bot_flag_is_exposed_and_expires_in_event_time() -> None:
    d = detector(bot_ttl_ms=3_600_000)
    t0 = 1_704_067_200_000
    for i in range(60):
        observe(d, Event(f"b{i}", "view", "b", "s", t0 + i * 500, item_id=f"i{i}"))
    assert d.is_bot("b") and d.bots() == ["b"]
    assert not d.is_bot("somebody else")
    observe(d, Event("late", "view", "b", "s2", t0 + 2 * 3_600_000, item_id="i1"))
    assert not d.is_bot("b")


def test_flags_are_rate_limited_per_user_and_kind() -> None:
    d = detector(cooldown_ms=3_600_000)
    t0 = 1_704_067_200_000
    flags = [
        a
        for i in range(2_000)
        for a in observe(d, Event(f"b{i}", "view", "b", "s", t0 + i * 100, item_id=f"i{i % 3}"))
    ]
    assert Counter(a["kind"] for a in flags)["bot"] == 1


def test_bots_do_not_teach_the_model() -> None:
    d = detector(hst_every=1)
    t0 = 1_704_067_200_000
    for i in range(300):
        observe(d, Event(f"b{i}", "view", "b", "s", t0 + i * 100, item_id=f"i{i}"))
    assert d.n_learned < 60  # learning stopped once the user was flagged


def purchase(n: int, user: str, price: float, qty: int = 1, item: str = "sku") -> Event:
    return Event(
        f"{user}-{n}",
        "purchase",
        user,
        f"{user}-s",
        1_704_067_200_000 + n * 3_600_000,
        item_id=item,
        price=price,
        quantity=qty,
    )


def test_large_orders_and_price_outliers_are_flagged_with_reasons() -> None:
    d = detector()
    normal = [a for n in range(200) for a in observe(d, purchase(n, f"u{n}", 20.0 + n % 7))]
    assert normal == []
    big = observe(d, purchase(300, "whale", 24.0, qty=400))
    assert [a["kind"] for a in big] == ["large_order"]
    assert "400 x 24.00" in big[0]["reason"]
    odd = observe(d, purchase(301, "tamper", 0.5))
    assert [a["kind"] for a in odd] == ["price_outlier"]
    assert "usual 2" in odd[0]["reason"]
    # The outlier price was not learned as usual.
    assert observe(d, purchase(302, "ok", 22.0)) == []


def test_a_user_state_without_a_newer_field_keeps_its_default() -> None:
    """The per-user JSON follows the dataclass: a state written before a field was added
    restores with the field's default (no new format needed)."""
    u = _User(last_ts=5, n_seen=3, bot_until=9)
    u.recent.extend([1, 2])
    u.items.append((1, "i"))
    d = _user_to_dict(u)
    assert _user_from_dict(d) == u
    del d["bot_until"]
    assert _user_from_dict(d).bot_until == _User().bot_until and _user_from_dict(d).n_seen == 3


_KINDS = ("view", "add_to_cart", "purchase", "search")


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 3),  # user
            st.sampled_from(_KINDS),
            st.integers(-120_000, 600_000),  # ms since the event before (out of order too)
            st.integers(0, 40),  # item
            st.one_of(st.none(), st.floats(0.0, 1e9, allow_nan=False)),  # price
            st.integers(1, 10_000),  # quantity
        ),
        max_size=120,
    ),
    cut=st.integers(0, 120),
)
def test_rules_then_model_halves_equal_observe_event_by_event(
    steps: list[tuple[int, str, int, int, float | None, int]], cut: int
) -> None:
    """The worker runs every rule half of a batch before its model halves (the model half
    after the Redis call is sent): over arbitrary events, extreme prices and quantities,
    out-of-order times and any batch cut, the flags, bot flags and stored state equal
    ``observe`` called event by event."""
    t, events = 1_700_000_000_000, []
    for n, (user, kind, gap, item, price, qty) in enumerate(steps):
        t += gap
        priced = kind in ("add_to_cart", "purchase")
        events.append(Event(f"e{n}", kind, f"u{user}", f"s{user}", t,
                            item_id=None if kind == "search" else f"i{item}",
                            price=price if priced else None,
                            quantity=qty if kind == "purchase" else None))  # fmt: skip
    one, two = detector(hst_warmup=5, hst_every=1), detector(hst_warmup=5, hst_every=1)
    together = [(e.event_id, f) for e in events for f in one.observe(e)]
    halves: list[tuple[str, Any]] = []
    for batch in (events[:cut], events[cut:]):
        observed = [(e, two.observe_rules(e)) for e in batch]
        halves += [(e.event_id, f) for e, o in observed for f in two.observe_model(o)]
    assert halves == together
    assert two.to_dict() == one.to_dict()
