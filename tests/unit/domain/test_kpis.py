"""Business figures per event-time day (streams.domain.kpis): the arithmetic of the store."""

from __future__ import annotations

from streams.core.events import Event
from streams.domain.kpis import KpiState, figures, kpi_record, step, totals

T0 = 1_709_251_200_000  # 2024-03-01 00:00 UTC
HOUR = 3_600_000


def ev(i: int, etype: str, session: str, ts: int, **kw: object) -> Event:
    return Event(event_id=f"e{i}", type=etype, user_id="u", session_id=session,  # type: ignore[arg-type]
                 ts_ms=ts, item_id=kw.pop("item_id", "x"), **kw)  # type: ignore[arg-type]  # fmt: skip


def run(events: list[Event]) -> KpiState:
    state = KpiState()
    for i, e in enumerate(events):
        rec = kpi_record(i, e)
        if rec is not None:
            step(state, rec)
    return state


def test_revenue_is_price_times_quantity_in_exact_cents() -> None:
    # 0.1 + 0.2 in floats is 0.30000000000000004; in cents it is 30
    state = run([ev(0, "purchase", "s", T0, price=0.1), ev(1, "purchase", "s", T0, price=0.2),
                 ev(2, "purchase", "s", T0, price=9.99, quantity=3)])  # fmt: skip
    f = figures("2024-03-01", state.days["2024-03-01"])
    assert f["revenue"] == 30.27
    assert f["items"] == 5 and f["purchases"] == 3
    assert f["orders"] == 1 and f["aov"] == 30.27  # one session bought: one order


def test_days_are_utc_event_time() -> None:
    state = run([ev(0, "purchase", "s", T0 - 1, price=1.0), ev(1, "purchase", "s", T0, price=2.0)])
    assert sorted(state.days) == ["2024-02-29", "2024-03-01"]
    assert figures("2024-02-29", state.days["2024-02-29"])["revenue"] == 1.0


def test_funnel_counts_each_session_once_per_stage_and_abandonment() -> None:
    events = [
        ev(0, "view", "s1", T0), ev(1, "view", "s1", T0 + 1), ev(2, "add_to_cart", "s1", T0 + 2),
        ev(3, "purchase", "s1", T0 + 3, price=5.0), ev(4, "purchase", "s1", T0 + 4, price=5.0),
        ev(5, "view", "s2", T0), ev(6, "add_to_cart", "s2", T0 + 1),  # abandoned
        ev(7, "view", "s3", T0 + HOUR),
        ev(8, "purchase", "s4", T0), ev(9, "add_to_cart", "s4", T0 + 5),  # cart after the buy
        ev(10, "search", "s5", T0), ev(11, "session_start", "s5", T0),  # count for nothing
    ]  # fmt: skip
    f = figures("2024-03-01", run(events).days["2024-03-01"])
    assert f["funnel"] == {"view": 3, "cart": 3, "purchase": 2}
    assert f["views"] == 4 and f["carts"] == 3
    assert f["cart_purchase"] == 2 and f["cart_abandonment"] == round(1 / 3, 4)
    assert f["orders"] == 2 and f["revenue"] == 10.0 and f["aov"] == 5.0


def test_categories_and_missing_prices() -> None:
    events = [ev(0, "view", "s", T0, category="shoes"),
              ev(1, "purchase", "s", T0, category="shoes", price=10.0, quantity=2),
              ev(2, "purchase", "s", T0, category="hats@home"),  # no price: counted, 0 revenue
              ev(3, "add_to_cart", "s", T0)]  # fmt: skip
    f = figures("2024-03-01", run(events).days["2024-03-01"])
    assert f["categories"]["shoes"] == {"views": 1, "carts": 0, "purchases": 1, "revenue": 20.0}
    assert f["categories"]["hats@home"]["purchases"] == 1
    assert f["categories"][""]["carts"] == 1
    assert f["revenue"] == 20.0 and f["items"] == 3


def test_figures_read_redis_bytes() -> None:
    f = figures("2024-03-01", {b"revenue": b"1250", b"s_purchase": b"2", b"revenue@a": b"1250"})
    assert f["revenue"] == 12.5 and f["aov"] == 6.25 and f["categories"]["a"]["revenue"] == 12.5
    assert figures("2024-03-01", {})["aov"] is None


def test_totals_of_a_range_are_ratios_of_sums() -> None:
    a = figures("d1", {"revenue": 1000, "s_purchase": 1, "s_view": 4, "s_cart": 2,
                       "s_cart_purchase": 1})  # fmt: skip
    b = figures("d2", {"revenue": 3000, "s_purchase": 1, "s_view": 1, "s_cart": 2,
                       "s_cart_purchase": 0})  # fmt: skip
    t = totals([a, b])
    assert t["revenue"] == 40.0 and t["orders"] == 2 and t["aov"] == 20.0
    assert t["funnel"] == {"view": 5, "cart": 4, "purchase": 2}
    assert t["cart_abandonment"] == 0.75 and t["conversion"] == 0.4
