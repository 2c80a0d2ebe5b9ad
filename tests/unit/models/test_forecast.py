"""The daily sales forecaster: weekly pattern, event time, JSON state, online selection."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.forecast import DAY_MS, DEFAULT_GRID, SalesForecaster, Selector

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z, a Monday
WEEK = [120.0, 100.0, 100.0, 110.0, 160.0, 0.0, 80.0]  # closed on Saturdays


def _noisy_days(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [max(WEEK[d % 7] * (1 + 0.002 * d) + rng.gauss(0, 15), 0.0) for d in range(n)]


def test_learns_a_weekly_pattern_from_purchases_in_event_time() -> None:
    f = SalesForecaster()
    for d in range(10 * 7):
        for k in range(int(WEEK[d % 7] // 10)):  # orders worth 10 each
            f.observe(T0 + d * DAY_MS + k * 60_000, 10.0)
    f.advance(T0 + 70 * DAY_MS)
    fc = f.forecast()
    assert [p["day"] for p in fc][:2] == ["2024-03-11", "2024-03-12"]
    assert [round(p["revenue"]) for p in fc] == [round(v) for v in WEEK]
    assert [round(p["orders"]) for p in fc] == [round(v / 10) for v in WEEK]


def test_beats_seasonal_naive_on_a_noisy_week() -> None:
    """Seasonal naive carries last week's noise; a smoothed season does not."""
    y = _noisy_days(200, seed=3)
    s = Selector()
    err, naive = [], []
    for t, v in enumerate(y):
        if t >= 56 and t + 7 <= len(y):
            fc = s.forecast()
            err += [abs(fc[h] - y[t + h]) for h in range(7)]
            naive += [abs(y[t + h - 7] - y[t + h]) for h in range(7)]
        s.learn(v)
    assert sum(err) < 0.9 * sum(naive)


def test_days_without_sales_are_zeros_and_late_purchases_count_today() -> None:
    f = SalesForecaster()
    f.observe(T0, 10.0)
    f.observe(T0 + 3 * DAY_MS, 5.0)  # days 1 and 2 had no sale
    assert f.metrics["revenue"].days == 3 and f.day == T0 // DAY_MS + 3
    f.observe(T0 + DAY_MS, 7.0)  # late: day 1 is learned already; counted into day 3
    assert (f.orders, f.revenue) == (2, 12.0)


def test_a_jump_far_in_event_time_restarts_instead_of_learning_years_of_zeros() -> None:
    f = SalesForecaster(max_gap_days=30)
    f.observe(T0, 10.0)
    f.observe(T0 + 1000 * DAY_MS, 4.0)
    assert f.metrics["revenue"].days == 0 and (f.orders, f.revenue) == (1, 4.0)


def test_forecast_before_a_full_week_is_zeros_and_empty_before_any_event() -> None:
    f = SalesForecaster()
    assert f.forecast() == []
    f.observe(T0, 10.0)
    assert [p["revenue"] for p in f.forecast()] == [0.0] * 7


def test_selection_moves_to_the_better_member() -> None:
    """A level shift: the fast-adapting member's recent errors are lower, so it is chosen."""
    s = Selector(grid=((0.05, 0.05, False), (0.5, 0.05, False)))
    for d in range(140):
        s.learn(100.0 if d < 70 else 300.0)
    assert s.best == 1
    assert abs(s.forecast()[0] - 300.0) < 10 < abs(s._member_forecasts()[0][0] - 300.0)


@settings(max_examples=25, deadline=None)
@given(
    days=st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1e6)), min_size=1, max_size=40),
    cut=st.integers(0, 40),
)
def test_json_state_round_trip_continues_identically(
    days: list[tuple[int, float]], cut: int
) -> None:
    """Save (through JSON bytes) at any point, restore, feed the rest: same forecasts."""
    a = SalesForecaster()
    b: SalesForecaster | None = None
    t = T0
    for i, (gap, amount) in enumerate(days):
        t += gap * DAY_MS
        if i == cut:
            b = SalesForecaster.from_dict(orjson.loads(orjson.dumps(a.to_dict())))
        a.observe(t, amount)
        if b is not None:
            b.observe(t, amount)
    if b is not None:
        assert b.to_dict() == a.to_dict()
        assert b.forecast() == a.forecast()


def test_bad_state_and_parameters_are_refused() -> None:
    state = SalesForecaster().to_dict()
    with pytest.raises(ValueError, match="version"):
        SalesForecaster.from_dict({**state, "version": 99})
    sel = Selector().to_dict()
    with pytest.raises(ValueError, match="grid member"):
        Selector.from_dict({**sel, "errors": [0.0]})
    with pytest.raises(ValueError):
        Selector(decay=1.0)
    assert len(DEFAULT_GRID) == 18


def _river_member_forecasts(s: Selector) -> list[list[float]]:
    """What the members' forecasts were before they were computed in place: River's
    ``HoltWinters.forecast``, back from ``log1p``, clipped at 0."""
    out = []
    for m, (_, _, log) in zip(s.models, s.grid, strict=True):
        vals = [math.expm1(min(v, 700.0)) if log else v for v in m.forecast(s.horizon)]
        out.append([max(v, 0.0) if math.isfinite(v) else 0.0 for v in vals])
    return out


@settings(max_examples=60, deadline=None)
@given(
    ys=st.lists(
        st.one_of(st.floats(0, 1e9), st.sampled_from([0.0, -0.0, 1e300, 5e-324])),
        min_size=7, max_size=60,
    ),
    horizon=st.integers(1, 20),
)
def test_member_forecasts_are_rivers_to_the_bit(ys: list[float], horizon: int) -> None:
    """The members' forecasts, computed in one loop and once per day learned, are River's
    floats exactly, before and after each day."""
    s = Selector(horizon=horizon)
    for y in ys:
        if s.ready:
            first = s._member_forecasts()
            assert orjson.dumps(first) == orjson.dumps(_river_member_forecasts(s))
            assert s._member_forecasts() is first  # the day's forecasts, reused
            assert s.forecast() == first[s.best]
        s.learn(y)
    assert orjson.dumps(s._member_forecasts()) == orjson.dumps(_river_member_forecasts(s))
