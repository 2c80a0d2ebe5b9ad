"""The sales forecast the worker publishes (``shop.forecasts``), as pure functions.

The daily figures are global: every partition adds to them (:mod:`streams.worker.kpi_store`).
A day is *complete* once every partition has passed it in event time, so the worker emits
the forecast made at origin day ``D`` -- from the complete days before ``D`` -- once the low
watermark across partitions passes the start of ``D`` (docs/marketing.md, "The forecast in
the worker"):

* a partition's watermark is the **second largest** event time it has applied
  (:func:`push`), so one outlier, a single event dated days ahead, cannot drag it;
* the low watermark (:func:`low_watermark`) is the smallest over the topic's partitions
  that are not idle (no record applied for a while of wall time:
  :mod:`streams.worker.forecasts` says how long); one without a watermark yet holds it
  back; when all are idle, the largest;
* the due origins (:func:`due_origins`) are the days whose start it has passed, after the
  last origin sent, at most :data:`CATCH_UP` of them (the newest): a backfill of history
  does not refit every day of it; the worker works them out a few per check
  (``SHOPSTREAM_FORECAST_ORIGINS_PER_CHECK``), oldest first, so an origin is passed over
  only when event time runs more than :data:`CATCH_UP` days ahead of the forecasts;
* the forecasts of an origin (:func:`forecasts_for`) are a pure function of the stored
  days before it: :func:`streams.domain.business.forecast_panel` on the shop's revenue and
  orders and on each of the top ``SHOPSTREAM_FORECAST_CATEGORIES`` categories' revenue and
  purchases, with the id ``forecast:<scope>:<origin>``.

>>> push((-1, -1), 5), push((5, -1), 9), push((9, 5), 7)
((5, -1), (9, 5), (9, 7))
>>> low_watermark({"a": 10, "b": 4}, {"a": 100, "b": 100}, now_ms=150, idle_ms=60)
4
>>> low_watermark({"a": 10, "b": 4}, {"a": 100, "b": 50}, now_ms=150, idle_ms=60)  # b idle
10
>>> due_origins(3 * DAY_MS, first_day=0, sent=1)
[2, 3]
>>> due_origins(50 * DAY_MS, first_day=0, sent=1)[:2]  # a backfill: the newest CATCH_UP
[16, 17]
>>> due_origins(50 * DAY_MS, first_day=0, sent=1, most=1)  # one per check, oldest first
[16]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from models.forecast import iso_day
from streams.core.payloads import Forecast
from streams.domain.business import ERROR_DAYS, HORIZON_DAYS, forecast_panel
from streams.domain.kpis import DAY_MS, day_number

#: The most origins due at once (the newest); older ones are passed over. Five weeks: a
#: worker that drains a backlog of days (event time several days ahead per check) while it
#: works out one origin per check still sends every one of them (tests/unit/worker/
#: test_forecast_tick.py).
CATCH_UP: Final = 35
#: Days before the origin the models learn from (26 weeks: bounds a refit's cost).
HISTORY_DAYS: Final = 182
#: The window over which categories are ranked by revenue.
RANK_DAYS: Final = 28
MODEL: Final = "holt-winters-selector-v1"
SHOP: Final = "shop"


def push(top2: tuple[int, int], ts: int) -> tuple[int, int]:
    """The two largest event times after one more (ties count twice); the watermark is the
    second. The store's script does the same per partition."""
    first, second = top2
    if ts > first:
        return ts, first
    return first, max(second, ts)


def low_watermark(
    marks: Mapping[str, int], seen_ms: Mapping[str, int], *, now_ms: int, idle_ms: int
) -> int | None:
    """The low watermark over the partitions in ``marks`` (every partition of the topic ->
    its watermark, -1 while it has none: it holds the others back), leaving out those idle
    (``seen_ms``: wall time their last record was applied, none = long ago; ``idle_ms`` 0 =
    never idle); all idle: the largest. ``None`` without partitions."""
    if not marks:
        return None
    busy = [v for k, v in marks.items() if idle_ms <= 0 or now_ms - seen_ms.get(k, 0) < idle_ms]
    return min(busy) if busy else max(marks.values())


def due_origins(
    low_ms: int | None, *, first_day: int | None, sent: int, most: int = 0
) -> list[int]:
    """Origin days (days since the epoch) whose start the low watermark passed, after the
    first stored day and the last origin ``sent``: of the newest :data:`CATCH_UP`, the
    oldest ``most`` (0 = all of them), so that a check's work is bounded and a catch-up
    paced (``SHOPSTREAM_FORECAST_ORIGINS_PER_CHECK``)."""
    if low_ms is None or low_ms < 0 or first_day is None:
        return []
    last = low_ms // DAY_MS
    start = max(sent + 1, first_day + 1, last - CATCH_UP + 1)
    if most > 0:
        last = min(last, start + most - 1)
    return list(range(start, last + 1))


def scopes(days: Sequence[Mapping[str, Any]], origin: int, n: int) -> list[str]:
    """``shop`` and the ``n`` categories with the most revenue in the :data:`RANK_DAYS`
    before ``origin`` (ties by name; the empty category is not one)."""
    totals: dict[str, float] = {}
    for d in days:
        if origin - RANK_DAYS <= day_number(d["day"]) < origin:
            for cat, row in d.get("categories", {}).items():
                if cat:
                    totals[cat] = totals.get(cat, 0.0) + float(row.get("revenue", 0.0))
    ranked = sorted(totals, key=lambda c: (-totals[c], c))
    return [SHOP, *(f"category:{c}" for c in ranked[:n] if totals[c] > 0)]


def series(days: Sequence[Mapping[str, Any]], scope: str) -> list[dict[str, Any]]:
    """``[{day, revenue, orders}]`` of a scope: the shop's revenue and orders (sessions that
    bought); a category's revenue and purchases (lines), 0 on a stored day without them."""
    if scope == SHOP:
        return [{"day": d["day"], "revenue": d["revenue"], "orders": d["orders"]} for d in days]
    cat = scope.removeprefix("category:")
    rows = [(d["day"], d.get("categories", {}).get(cat, {})) for d in days]
    return [{"day": day, "revenue": float(r.get("revenue", 0.0)),
             "orders": int(r.get("purchases", 0))} for day, r in rows]  # fmt: skip


def forecast_id(scope: str, origin: int) -> str:
    return f"forecast:{scope}:{iso_day(origin)}"


def forecasts_for(
    days: Sequence[Mapping[str, Any]], origin: int, categories: int
) -> list[Forecast]:
    """The forecasts made at ``origin`` from the stored ``days`` (figures as
    :func:`streams.domain.kpis.figures` gives them; those at or after ``origin`` and those
    more than :data:`HISTORY_DAYS` before it are ignored): one per scope whose models are
    ready (a week of history), deterministic.

    >>> days = [{"day": iso_day(n), "revenue": 10.0 + n % 7, "orders": 1,
    ...          "categories": {"hats": {"revenue": 3.0, "purchases": 1}}} for n in range(14)]
    >>> [(f["forecast_id"], f["days"][0]) for f in forecasts_for(days, 14, categories=5)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('forecast:shop:1970-01-15', {'day': '1970-01-15', 'revenue': 10.0, 'orders': 1.0}),
     ('forecast:category:hats:1970-01-15', {'day': '1970-01-15', 'revenue': 3.0, 'orders': 1.0})]
    >>> forecasts_for(days, 14, 5) == forecasts_for(list(reversed(days)), 14, 5)
    True
    """
    known = sorted(
        (d for d in days if origin - HISTORY_DAYS <= day_number(d["day"]) < origin),
        key=lambda d: str(d["day"]),
    )
    out: list[Forecast] = []
    for scope in scopes(known, origin, categories):
        rows = series(known, scope)
        panel = forecast_panel(rows, iso_day(origin), HORIZON_DAYS, ERROR_DAYS)
        if not panel["forecast"]:
            continue
        out.append(Forecast(
            forecast_id=forecast_id(scope, origin), scope=scope, origin=iso_day(origin),
            days=panel["forecast"], mae=panel["mae"], baseline_mae=panel["baseline_mae"],
            n=panel["n"], history_days=len(rows), model=MODEL,
        ))  # fmt: skip
    return out
