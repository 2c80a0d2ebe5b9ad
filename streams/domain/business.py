"""What the shop owner reads from the stored figures: the sales forecast with its recent
error, and the uplift of churn coupons against the holdout (pure functions).

* :func:`forecast_panel` fits :class:`models.forecast.SalesForecaster` on the daily revenue
  and orders of :mod:`streams.domain.kpis` (a day without figures is a day without sales),
  up to the last complete event-time day; before learning each day it notes the forecast
  the model made for it, so the recent error is measured on days the model had not seen,
  next to the seasonal-naive forecast (the same weekday a week before).
* :func:`uplift_panel` compares the return rate of resolved treatment alerts with the
  holdout's (Newcombe's interval of the difference, Wilson intervals of each rate, from
  :mod:`models.uplift`), and the revenue per alerted customer (seeded bootstrap interval).

>>> days = [{"day": f"2024-01-{d:02d}", "revenue": 100.0 + 50 * (d % 7 == 5), "orders": 2}
...         for d in range(1, 29)]
>>> p = forecast_panel(days, today="2024-01-29")
>>> [r["day"] for r in p["forecast"]][:2], round(p["forecast"][4]["revenue"])
(['2024-01-29', '2024-01-30'], 150)
>>> p["mae"] < 1.0, p["baseline_mae"]
(True, 0.0)
>>> u = uplift_panel([{"group": "treatment", "resolved": True, "returned": True, "revenue": 20.0},
...                   {"group": "holdout", "resolved": True, "returned": False, "revenue": 0.0},
...                   {"group": "holdout", "resolved": False, "returned": False, "revenue": 0.0}])
>>> u["treatment"]["n"], u["holdout"]["n"], u["holdout"]["pending"], u["uplift"]
(1, 1, 1, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any, Final

from models.forecast import DAY_MS, SalesForecaster, iso_day
from models.uplift import bootstrap_diff, newcombe, wilson
from streams.domain.kpis import day_number

HORIZON_DAYS: Final = 7
ERROR_DAYS: Final = 28  # the recent error: forecasts of the last four weeks
GROUPS: Final = ("treatment", "holdout")


def _finite(v: float, digits: int = 4) -> float | None:
    return round(v, digits) if math.isfinite(v) else None


def forecast_panel(
    days: Sequence[Mapping[str, Any]], today: str, horizon: int = HORIZON_DAYS,
    error_days: int = ERROR_DAYS,
) -> dict[str, Any]:  # fmt: skip
    """``{"forecast": [{day, revenue, orders}], "recent": [{day, revenue, forecast, naive}],
    "mae", "baseline_mae", "n"}``: the next ``horizon`` days from ``today`` (the current
    event-time day, not complete: it is forecast, not learned), and the one-day-ahead
    forecasts of the last ``error_days`` complete days with their errors."""
    out: dict[str, Any] = {"forecast": [], "recent": [], "mae": None, "baseline_mae": None,
                           "n": 0}  # fmt: skip
    if not days:
        return out
    by_day = {day_number(d["day"]): d for d in days}
    first, end = min(by_day), day_number(today)
    f = SalesForecaster(horizon)
    actual: dict[int, float] = {}
    recent = []
    for n in range(first, end):
        row = by_day.get(n, {})
        revenue, orders = float(row.get("revenue", 0.0)), int(row.get("orders", 0))
        f.advance(n * DAY_MS)
        guess = f.forecast()[0]["revenue"] if f.metrics["revenue"].ready else None
        actual[n] = revenue
        if guess is not None and n - 7 in actual:
            recent.append({"day": iso_day(n), "revenue": revenue, "forecast": round(guess, 2),
                           "naive": actual[n - 7]})  # fmt: skip
        f.observe(n * DAY_MS, revenue, orders)
    f.advance(end * DAY_MS)
    recent = recent[-error_days:]
    out["recent"], out["n"] = recent, len(recent)
    if recent:
        out["mae"] = round(fmean(abs(r["forecast"] - r["revenue"]) for r in recent), 2)
        out["baseline_mae"] = round(fmean(abs(r["naive"] - r["revenue"]) for r in recent), 2)
    if f.metrics["revenue"].ready:
        out["forecast"] = [{"day": p["day"], "revenue": round(p["revenue"], 2),
                            "orders": round(p["orders"], 2)} for p in f.forecast()]  # fmt: skip
    return out


def with_outcome(alert: Mapping[str, Any], outcome: Mapping[str, Any] | None) -> dict[str, Any]:
    """A tallied alert with its published outcome, when there is one (authoritative: the
    purchases in the whole window, the coupon's cost, the alert's segment); before it, the
    tally's view (``discount`` 0, ``segment`` unknown).

    >>> a = {"alert_id": "a", "group": "treatment", "resolved": False, "returned": True,
    ...      "revenue": 5.0}
    >>> with_outcome(a, None)["discount"], with_outcome(a, None)["segment"]
    (0.0, '')
    >>> o = {"returned": True, "revenue": 30.0, "discount_cost": 6.0, "segment": "loyal",
    ...      "redeemed": True}
    >>> r = with_outcome(a, o); r["resolved"], r["revenue"], r["discount"], r["segment"]
    (True, 30.0, 6.0, 'loyal')
    """
    if outcome is None:
        return {**alert, "discount": 0.0, "segment": "", "redeemed": False}
    return {
        **alert, "resolved": True, "returned": bool(outcome["returned"]),
        "revenue": float(outcome["revenue"]), "discount": float(outcome["discount_cost"]),
        "segment": str(outcome.get("segment", "")), "redeemed": bool(outcome["redeemed"]),
    }  # fmt: skip


def uplift_panel(alerts: Sequence[Mapping[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Per group: alerts ``n`` resolved (bought again, or the horizon passed), ``pending``,
    ``returned``, ``rate`` with its Wilson interval, ``revenue_per_customer``, the coupons'
    ``discount_per_customer`` and ``net_revenue_per_customer`` (revenue minus discount),
    ``redeemed``; then the ``uplift`` (treatment rate minus holdout rate) with Newcombe's 95%
    interval, and the revenue and net revenue differences per alerted customer with
    bootstrap intervals (``discount`` is 0 for rows without it)."""
    out: dict[str, Any] = {}
    revenues: dict[str, list[float]] = {}
    nets: dict[str, list[float]] = {}
    for g in GROUPS:
        mine = [a for a in alerts if a["group"] == g]
        done = [a for a in mine if a["resolved"]]
        k = sum(1 for a in done if a["returned"])
        lo, hi = wilson(k, len(done))
        revenues[g] = [float(a["revenue"]) for a in done]
        costs = [float(a.get("discount", 0.0)) for a in done]
        nets[g] = [r - c for r, c in zip(revenues[g], costs, strict=True)]
        out[g] = {
            "n": len(done), "pending": len(mine) - len(done), "returned": k,
            "rate": round(k / len(done), 4) if done else None,
            "rate_low": round(lo, 4), "rate_high": round(hi, 4),
            "revenue_per_customer": round(fmean(revenues[g]), 2) if done else None,
            "discount_per_customer": round(fmean(costs), 2) if done else None,
            "net_revenue_per_customer": round(fmean(nets[g]), 2) if done else None,
            "redeemed": sum(1 for a in done if a.get("redeemed")),
        }  # fmt: skip
    t, h = out["treatment"], out["holdout"]
    d, lo, hi = newcombe(t["returned"], t["n"], h["returned"], h["n"])
    out |= {"uplift": _finite(d), "ci_low": _finite(lo), "ci_high": _finite(hi)}
    for name, values in (("revenue", revenues), ("net_revenue", nets)):
        rd, rlo, rhi = bootstrap_diff(values["treatment"], values["holdout"], seed=seed,
                                      resamples=500)  # fmt: skip
        out |= {f"{name}_uplift": _finite(rd, 2), f"{name}_ci_low": _finite(rlo, 2),
                f"{name}_ci_high": _finite(rhi, 2)}  # fmt: skip
    return out
