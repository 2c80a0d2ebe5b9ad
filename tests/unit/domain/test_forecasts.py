"""The rules of the published forecast (streams.domain.forecasts): the watermarks, which
origins are due, and forecasts that are a pure function of the days before their origin."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from models.forecast import iso_day
from streams.domain.business import forecast_panel
from streams.domain.forecasts import (
    CATCH_UP,
    HISTORY_DAYS,
    due_origins,
    forecasts_for,
    low_watermark,
    push,
    scopes,
)
from streams.domain.kpis import DAY_MS, day_number

FIRST = day_number("2024-01-01")


def day(n: int, revenue: float, **cats: float) -> dict[str, Any]:
    return {"day": iso_day(FIRST + n), "revenue": revenue, "orders": int(revenue > 0),
            "categories": {c: {"revenue": v, "purchases": 1} for c, v in cats.items()}}  # fmt: skip


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=40), st.integers(10**7, 10**8))
def test_one_outlier_cannot_drag_a_partition_watermark(times: list[int], outlier: int) -> None:
    top = (-1, -1)
    for t in times:
        top = push(top, t)
    with_outlier = push(top, outlier)
    assert with_outlier[1] <= max(times)  # the watermark stays within the real events
    assert top[1] == (sorted(times)[-2] if len(times) > 1 else -1)


def test_the_low_watermark_waits_for_the_slowest_busy_partition() -> None:
    marks = {"t@x:0": 10 * DAY_MS, "t@x:1": 3 * DAY_MS}
    seen = {"t@x:0": 1_000, "t@x:1": 1_000}
    assert low_watermark(marks, seen, now_ms=2_000, idle_ms=0) == 3 * DAY_MS
    assert low_watermark(marks, seen, now_ms=2_000, idle_ms=60_000) == 3 * DAY_MS
    # partition 1 quiet for a minute of wall time: left out
    seen["t@x:1"] = 1_000 - 60_000
    assert low_watermark(marks, seen, now_ms=2_000, idle_ms=60_000) == 10 * DAY_MS
    assert low_watermark(marks, seen, now_ms=2_000, idle_ms=0) == 3 * DAY_MS  # idleness off
    # all idle: everything there is has arrived
    assert low_watermark(marks, {}, now_ms=10**9, idle_ms=60_000) == 10 * DAY_MS
    # a partition without a watermark yet (no event, or one) holds the others back
    assert low_watermark(marks | {"t@x:2": -1}, seen, now_ms=2_000, idle_ms=0) == -1
    assert due_origins(-1, first_day=FIRST, sent=-1) == []
    assert low_watermark({}, {}, now_ms=0, idle_ms=0) is None


def test_an_origin_is_due_once_the_low_watermark_passed_its_start() -> None:
    start = (FIRST + 9) * DAY_MS
    assert due_origins(start - 1, first_day=FIRST, sent=-1)[-1] == FIRST + 8
    assert due_origins(start, first_day=FIRST, sent=-1)[-1] == FIRST + 9
    assert due_origins(start, first_day=FIRST, sent=FIRST + 9) == []
    assert due_origins(start, first_day=FIRST, sent=FIRST + 7) == [FIRST + 8, FIRST + 9]
    # the first origin has one complete day before it; a backfill sends the newest CATCH_UP
    assert due_origins(FIRST * DAY_MS + 5, first_day=FIRST, sent=-1) == []
    assert due_origins(start, first_day=FIRST, sent=-1) == list(range(FIRST + 1, FIRST + 10))
    late = (FIRST + 99) * DAY_MS
    assert due_origins(late, first_day=FIRST, sent=-1) == list(
        range(FIRST + 100 - CATCH_UP, FIRST + 100)
    )
    assert due_origins(None, first_day=FIRST, sent=-1) == []


def test_a_check_takes_at_most_its_share_of_the_due_origins_oldest_first() -> None:
    start = (FIRST + 9) * DAY_MS
    assert due_origins(start, first_day=FIRST, sent=FIRST + 6, most=1) == [FIRST + 7]
    assert due_origins(start, first_day=FIRST, sent=FIRST + 6, most=2) == [FIRST + 7, FIRST + 8]
    assert due_origins(start, first_day=FIRST, sent=FIRST + 6, most=9) == [FIRST + 7, FIRST + 8,
                                                                            FIRST + 9]  # fmt: skip
    assert due_origins(start, first_day=FIRST, sent=FIRST + 6, most=0) == [FIRST + 7, FIRST + 8,
                                                                            FIRST + 9]  # fmt: skip
    assert due_origins(start, first_day=FIRST, sent=FIRST + 9, most=1) == []


def test_categories_are_the_top_ones_by_revenue_before_the_origin() -> None:
    days = [day(n, 50.0, hats=1.0, shoes=5.0, socks=2.0, **{"": 9.0}) for n in range(30)]
    days.append(day(30, 50.0, hats=1_000.0))  # on the origin day: not known yet
    assert scopes(days, FIRST + 30, 2) == ["shop", "category:shoes", "category:socks"]
    assert scopes(days, FIRST + 30, 0) == ["shop"]


def test_a_forecast_is_a_function_of_the_days_before_its_origin_only() -> None:
    days = [day(n, 100.0 + 40 * (n % 7 == 4), hats=5.0 + n % 3) for n in range(21)]
    made = forecasts_for(days, FIRST + 14, categories=3)
    assert [f["forecast_id"] for f in made] == [
        "forecast:shop:2024-01-15", "forecast:category:hats:2024-01-15"
    ]  # fmt: skip
    # later days, a reordering, or days past the history change nothing
    ancient = [day(-HISTORY_DAYS - 5, 1e6, hats=1e6)]
    again = forecasts_for(list(reversed(days)) + ancient, FIRST + 14, categories=3)
    assert again == made
    # and it is the dashboard's panel on those days
    want = forecast_panel([{k: d[k] for k in ("day", "revenue", "orders")} for d in days[:14]],
                          iso_day(FIRST + 14))  # fmt: skip
    assert made[0]["days"] == want["forecast"]
    assert (made[0]["mae"], made[0]["baseline_mae"], made[0]["n"]) == (
        want["mae"], want["baseline_mae"], want["n"]
    )
    # a day before the origin changed: another forecast
    days[10] = day(10, 900.0, hats=5.0)
    assert forecasts_for(days, FIRST + 14, categories=3)[0]["days"] != made[0]["days"]


def test_no_forecast_before_a_week_of_history() -> None:
    days = [day(n, 10.0) for n in range(5)]
    assert forecasts_for(days, FIRST + 5, categories=1) == []
