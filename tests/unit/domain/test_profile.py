"""Live profiles: RFM, Welford intervals, decayed windows, out-of-order and late events."""

from __future__ import annotations

import itertools
import math
import statistics

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.events import Event
from streams.domain.profile import (
    DAY_MS,
    FEATURE_NAMES,
    MAX_CATEGORIES,
    ORDER_WEEKS,
    Profile,
    features,
    season_return,
    update_profile,
)

T0 = 1_704_067_200_000


def ev(i: int, etype: str = "view", day: float = 0.0, session: str = "s1", **kw: object) -> Event:
    item = None if etype in ("search", "session_start") else kw.pop("item_id", "i1")
    return Event(f"e{i}", etype, "u1", session, T0 + int(day * DAY_MS), item_id=item, **kw)  # type: ignore[arg-type]


def run(events: list[Event]) -> Profile:
    p: Profile | None = None
    for e in events:
        p = update_profile(p, e)
    assert p is not None
    return p


def test_rfm_and_welford_intervals() -> None:
    days = [0, 3, 10, 12, 30]
    p = run([ev(i, "purchase", d, f"s{i}", price=10.0, quantity=2) for i, d in enumerate(days)])
    gaps = [b - a for a, b in itertools.pairwise(days)]
    assert p.n_orders == 5 and p.n_purchases == 5
    assert p.monetary == 100.0
    assert p.ipi_n == 4
    assert math.isclose(p.ipi_mean, statistics.mean(gaps))
    assert math.isclose(p.ipi_m2 / (p.ipi_n - 1), statistics.variance(gaps))
    assert p.last_purchase_ms == T0 + 30 * DAY_MS and p.first_purchase_ms == T0


def test_purchases_of_one_order_open_no_interval() -> None:
    p = run([ev(i, "purchase", i / 24 / 60, price=5.0) for i in range(3)])  # a minute apart
    assert p.n_purchases == 3 and p.n_orders == 1 and p.ipi_n == 0


def test_last_seen_never_moves_backwards_and_late_purchase_is_counted() -> None:
    p = run([ev(1, "purchase", 10, price=1.0), ev(2, "view", 20), ev(3, "purchase", 5, price=2.0)])
    assert p.last_seen_ms == T0 + 20 * DAY_MS
    assert p.first_seen_ms == T0 + 5 * DAY_MS
    assert p.last_purchase_ms == T0 + 10 * DAY_MS
    assert p.first_purchase_ms == T0 + 5 * DAY_MS
    assert p.n_orders == 2 and p.monetary == 3.0
    assert p.ipi_n == 0  # a late purchase cannot be placed between known ones


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(12))))
def test_order_independent_parts_are_exact_for_any_arrival_order(order: list[int]) -> None:
    days = [0.0, 0.5, 1, 2, 3.5, 5, 8, 13, 21, 34, 40, 41]
    evs = [ev(i, "purchase" if i % 4 == 0 else "view", days[i], price=3.0) for i in range(12)]
    a = run(evs)
    b = run([evs[i] for i in order])
    for name in ("last_seen_ms", "first_seen_ms", "n_events", "last_purchase_ms", "monetary"):
        assert getattr(a, name) == getattr(b, name), name
    now = T0 + 50 * DAY_MS
    fa, fb = features(a, now), features(b, now)
    for name in ("events_7d", "events_30d", "purchases_30d", "idle_days"):
        assert math.isclose(fa[name], fb[name], rel_tol=1e-9, abs_tol=1e-12), name


def test_decayed_windows_follow_event_time() -> None:
    p = run([ev(1, "view", 0)])
    f_now = features(p, T0)
    f_later = features(p, T0 + 30 * DAY_MS)
    assert math.isclose(f_now["events_30d"], math.log1p(1.0))
    assert math.isclose(f_later["events_30d"], math.log1p(math.exp(-1.0)))


def test_cart_abandonment_and_reset_on_purchase() -> None:
    p = run([ev(1, "add_to_cart", 0, "s1"), ev(2, "view", 1, "s2"), ev(3, "add_to_cart", 2, "s3")])
    assert p.abandoned_carts == 1 and p.carts_since_purchase == 2 and p.n_sessions == 3
    update_profile(p, ev(4, "purchase", 2.01, "s3", price=1.0))
    assert p.carts_since_purchase == 0 and p.cart_session == ""


def test_categories_are_bounded() -> None:
    p = run([ev(i, "view", i / 100, category=f"c{i % 20}") for i in range(200)])
    assert len(p.categories) == MAX_CATEGORIES


def test_serialisation_round_trip_and_size() -> None:
    evs = [
        ev(
            i,
            ("view", "add_to_cart", "purchase")[i % 3],
            i / 3,
            f"session-{i // 7}",
            category=f"category-{i % 9}",
            price=12.5,
            item_id=f"item-{i}",
        )
        for i in range(500)
    ]
    p = run(evs)
    raw = orjson.dumps(p.to_dict())
    assert len(raw) <= 2048
    q = Profile.from_dict(orjson.loads(raw))
    assert q == p
    assert features(q, T0 + 200 * DAY_MS) == features(p, T0 + 200 * DAY_MS)


def test_features_are_finite_and_complete() -> None:
    p = run([ev(1, "view", 0)])  # never purchased
    for now in (T0 - DAY_MS, T0, T0 + 400 * DAY_MS):  # even "now" before the profile's events
        f = features(p, now)
        assert set(f) == {*FEATURE_NAMES, "recency_days", "idle_days"}
        assert all(math.isfinite(v) for v in f.values())
    assert features(p, T0)["has_purchased"] == 0.0


def test_model_inputs_stay_bounded_however_long_the_silence() -> None:
    """The learned model must not meet a value far outside what it was trained on: a linear
    day count grows without bound (and let the logistic model turn around past the longest
    silence it had labels for, issue 14); logs and ratios grow by a few units at most."""
    p = run([ev(i, "purchase", 3 * i, f"s{i}", price=20.0) for i in range(5)])
    ten_years = features(p, p.last_seen_ms + 3650 * DAY_MS)
    assert all(abs(ten_years[k]) < 15 for k in FEATURE_NAMES), ten_years
    assert ten_years["recency_days"] == 3650  # still there, for alerts and the baseline


def test_recency_ratio_separates_slow_from_fast_buyers() -> None:
    fast = run([ev(i, "purchase", 2 * i, f"s{i}", price=1.0) for i in range(20)])
    slow = run([ev(i, "purchase", 20 * i, f"s{i}", price=1.0) for i in range(3)])
    now_fast = fast.last_purchase_ms + 15 * DAY_MS
    now_slow = slow.last_purchase_ms + 15 * DAY_MS
    ff, fs = features(fast, now_fast), features(slow, now_slow)
    assert ff["recency_days"] == fs["recency_days"]
    assert ff["p_alive"] < fs["p_alive"]
    assert ff["recency_ratio"] > fs["recency_ratio"]


def test_envelope_json_of_the_profile_is_its_to_dict() -> None:
    """Envelopes let orjson serialise the Profile dataclass directly (streams/worker/intake.py);
    that must stay the same JSON as ``to_dict`` (what ``from_dict`` reads back)."""
    p = None
    for n, kind in enumerate(["view", "add_to_cart", "purchase"]):
        e = Event(f"e{n}", kind, "u", "s", 1_709_283_600_000 + n, item_id="i", category="c",
                  price=2.5, quantity=2)  # fmt: skip
        p = update_profile(p, e)
    assert p is not None
    assert orjson.dumps(p) == orjson.dumps(p.to_dict())
    assert Profile.from_dict(orjson.loads(orjson.dumps(p))) == p


# --- annual returns -----------------------------------------------------------------------


def test_season_return_looks_at_the_coming_horizon_a_year_earlier() -> None:
    """1 when an order fell in a whole week inside [now - 365 d, now - 365 d + H); else 0."""
    p = run([ev(0, "purchase", day=0, price=5.0), ev(1, "purchase", day=120, price=5.0)])
    at = {d: season_return(p, T0 + d * DAY_MS, 90.0) for d in (150, 260, 280, 440, 500)}
    # day 280: the window a year back is days -85..5 (day 0); 440: 75..165 (day 120);
    # 150, 260 and 500: no order in -215..-125, -105..-15 nor 135..225
    assert at == {150: 0.0, 260: 0.0, 280: 1.0, 440: 1.0, 500: 0.0}
    assert season_return(run([ev(0, "view")]), T0 + 300 * DAY_MS, 90.0) == 0.0  # no order
    # a horizon longer than half a year looks at half a year only (never at recent orders)
    assert season_return(p, T0 + 130 * DAY_MS, 400.0) == 0.0


def test_order_weeks_stay_bounded_and_survive_late_purchases_and_json() -> None:
    p = run([ev(i, "purchase", day=3.5 * i, price=1.0) for i in range(300)])  # 3 years
    assert 0 < p.order_weeks < 1 << ORDER_WEEKS
    assert Profile.from_dict(orjson.loads(orjson.dumps(p.to_dict()))) == p
    late = run([ev(0, "purchase", day=400, price=1.0), ev(1, "purchase", day=50, price=1.0)])
    assert season_return(late, T0 + 400 * DAY_MS, 30.0) == 1.0  # the late order, a year back
    too_late = run([ev(0, "purchase", day=900, price=1.0), ev(1, "purchase", day=0, price=1.0)])
    assert too_late.order_weeks == 1  # older than the kept weeks: not marked
