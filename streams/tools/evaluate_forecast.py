"""``shopstream evaluate forecast``: rolling-origin forecasts of daily revenue and orders.

The CSV is the one of ``evaluate churn`` (``user_id,timestamp,amount``; each row one order).
The transactions are replayed in event time through :class:`models.forecast.SalesForecaster`
(the same class a worker would run). At the start of every day -- the *origin* -- the
forecaster has learned every earlier day and nothing of this one; its forecasts of this day
and the ``H - 1`` after it are compared with what happened. The baseline, in the same run and
on the same (origin, day) pairs, is seasonal naive: the same weekday of the last week known
at the origin (``y[d - 7]`` for ``H <= 7``). Origins start after ``warmup_days`` (the models
need a few weeks) and stop ``H`` days before the end, so every forecast is scored.

MAE is over all (origin, day) pairs; MAPE over those whose actual is positive (a closed day's
percentage error is undefined; how many are left out is reported). Also per forecast step,
per weekday of the forecast day and per calendar month of the origin.

>>> y = [0.0, 10, 10, 10, 10, 10, 20] * 6
>>> r = rolling([(i, v, 1) for i, v in enumerate(y)], horizon=7, warmup_days=14)
>>> r["n"], r["baseline_mae"], r["mae"] < 1e-6
(154, 0.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from models.forecast import DAY_MS, METRICS, SalesForecaster, iso_day
from streams.tools.evaluate_churn import TransactionsError, read_transactions

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def daily_totals(path: Path) -> list[tuple[int, float, int]]:
    """``(day number, revenue, orders)`` for every day from the first to the last, zeros
    for days without a row."""
    rows = read_transactions(path)
    if not rows:
        raise TransactionsError(f"{path}: no transactions")
    by_day: dict[int, list[float]] = {}
    for r in rows:
        tot = by_day.setdefault(r.ts_ms // DAY_MS, [0.0, 0.0])
        tot[0] += r.amount
        tot[1] += 1
    first, last = min(by_day), max(by_day)
    return [(d, by_day.get(d, [0.0, 0.0])[0], int(by_day.get(d, [0.0, 0.0])[1]))
            for d in range(first, last + 1)]  # fmt: skip


class _Errors:
    """Absolute (and percentage) errors of the model and the baseline on the same pairs."""

    def __init__(self) -> None:
        self.abs: list[float] = []
        self.base: list[float] = []
        self.pct: list[float] = []
        self.base_pct: list[float] = []

    def add(self, pred: float, base: float, actual: float) -> None:
        self.abs.append(abs(pred - actual))
        self.base.append(abs(base - actual))
        if actual > 0:
            self.pct.append(abs(pred - actual) / actual)
            self.base_pct.append(abs(base - actual) / actual)

    def summary(self) -> dict[str, Any]:
        n = len(self.abs)
        mae = sum(self.abs) / n if n else math.nan
        bmae = sum(self.base) / n if n else math.nan
        return {
            "mae": mae, "baseline_mae": bmae,
            "mape": sum(self.pct) / len(self.pct) if self.pct else math.nan,
            "baseline_mape": sum(self.base_pct) / len(self.base_pct) if self.pct else math.nan,
            "skill": 1 - mae / bmae if n and bmae > 0 else math.nan,
            "n": n, "n_mape": len(self.pct),
        }  # fmt: skip


def rolling(
    days: Sequence[tuple[int, float, int]], horizon: int = 7, warmup_days: int = 56,
    first_origin: int | None = None, last_origin: int | None = None,
    forecaster: SalesForecaster | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Rolling-origin evaluation over consecutive ``(day, revenue, orders)`` totals.

    ``first_origin``/``last_origin`` (day numbers) restrict the scored origins (a period);
    the model still learns from the first day on.
    """
    if horizon < 1 or horizon > 7:
        raise TransactionsError("horizon_days must be between 1 and 7 (the baseline's week)")
    f = forecaster or SalesForecaster(horizon=horizon)
    start = days[0][0] if days else 0
    errs = {m: _Errors() for m in METRICS}
    steps = [_Errors() for _ in range(horizon)]
    weekdays = [_Errors() for _ in range(7)]
    months: dict[str, _Errors] = {}
    for i, (day, revenue, orders) in enumerate(days):
        f.advance(day * DAY_MS)  # the origin: every earlier day learned, nothing of this one
        scored = i >= max(warmup_days, 7) and i + horizon <= len(days)
        scored = scored and (first_origin is None or day >= first_origin)
        scored = scored and (last_origin is None or day <= last_origin)
        if scored:
            fc = f.forecast()
            month = iso_day(day)[:7]
            for h in range(horizon):
                d, rev, n = days[i + h]
                base_rev, base_n = days[i + h - 7][1], days[i + h - 7][2]
                errs["revenue"].add(fc[h]["revenue"], base_rev, rev)
                errs["orders"].add(fc[h]["orders"], base_n, n)
                steps[h].add(fc[h]["revenue"], base_rev, rev)
                weekdays[(d + 3) % 7].add(fc[h]["revenue"], base_rev, rev)  # day 0: Thursday
                months.setdefault(month, _Errors()).add(fc[h]["revenue"], base_rev, rev)
        f.observe(day * DAY_MS, revenue, orders)
    out = errs["revenue"].summary()
    if not out["n"]:
        raise TransactionsError(
            f"no origin to score: {len(days)} days, warm-up {warmup_days}, horizon {horizon}"
        )
    out["orders"] = errs["orders"].summary()
    out["by_step"] = [{"step": h + 1, **e.summary()} for h, e in enumerate(steps)]
    out["by_weekday"] = [{"weekday": WEEKDAYS[k], **e.summary()} for k, e in enumerate(weekdays)]
    out["by_month"] = [{"month": m, **e.summary()} for m, e in sorted(months.items())]
    out["days"] = len(days)
    out["first_day"], out["last_day"] = iso_day(start), iso_day(days[-1][0])
    out["horizon_days"], out["warmup_days"] = horizon, warmup_days
    out["chosen"] = {m: list(f.metrics[m].grid[f.metrics[m].best]) for m in METRICS}
    return out


def _day_number(d: date | None) -> int | None:
    if d is None:
        return None
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000) // DAY_MS


def evaluate(
    transactions: Path, horizon_days: int = 7, warmup_days: int = 56,
    first_origin: date | None = None, last_origin: date | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Read the file, sum its days, run :func:`rolling`."""
    if warmup_days < 0:
        raise TransactionsError("warmup_days must not be negative")
    days = daily_totals(transactions)
    return rolling(days, horizon_days, warmup_days, _day_number(first_origin),
                   _day_number(last_origin))  # fmt: skip

