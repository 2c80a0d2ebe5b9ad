"""Online daily sales forecast: orders and revenue for the next days, weekly seasonality.

A :class:`SalesForecaster` learns in event time from purchases (``observe(ts_ms, amount)``):
it sums the current UTC day and, when a later day begins (``advance`` or a later purchase),
learns the closed day's totals -- days without a purchase count as zeros, so a shop that is
closed on Saturdays teaches the model its Saturdays. Each metric (``orders``, ``revenue``)
has a :class:`Selector`: a small grid of River :class:`~river.time_series.HoltWinters`
models (additive, weekly season, a slow trend; on the raw series and on ``log1p`` of it)
that all learn every day, and the forecast is the one of the grid member whose recent
forecasts were best: every forecast a member makes is kept until its days are known, and
its absolute error on each of them feeds an exponentially weighted mean (``decay`` per
resolved forecast). So the smoothing constants and the log transform are chosen online, by
measurement on the shop's own past, not by hand. Why this grid and not SNARIMAX: on the
Online Retail and CDNOW invoices SNARIMAX lost to seasonal naive (docs/marketing.md).

State is plain JSON (:meth:`SalesForecaster.to_dict` / :meth:`from_dict`), no pickle.

>>> f = SalesForecaster()
>>> t0 = 1_704_067_200_000                                  # 2024-01-01, a Monday
>>> for d in range(28):                                     # 4 weeks: 2 orders a day, 3 on Fridays
...     for k in range(3 if d % 7 == 4 else 2):
...         f.observe(t0 + d * DAY_MS + k, 50.0)
>>> f.advance(t0 + 28 * DAY_MS)                             # day 27 is over: learn it
>>> [(p["day"], round(p["orders"], 1)) for p in f.forecast()][:5]  # doctest: +NORMALIZE_WHITESPACE
[('2024-01-29', 2.0), ('2024-01-30', 2.0), ('2024-01-31', 2.0), ('2024-02-01', 2.0),
 ('2024-02-02', 3.0)]
>>> SalesForecaster.from_dict(f.to_dict()).forecast() == f.forecast()
True
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime
from typing import Any, Final

from river import time_series

DAY_MS: Final = 86_400_000
STATE_VERSION: Final = 1
METRICS: Final = ("orders", "revenue")
#: The grid each metric's selector chooses from: (alpha, gamma, log1p transform).
DEFAULT_GRID: Final = tuple(
    (a, g, log) for a in (0.1, 0.2, 0.3) for g in (0.05, 0.1, 0.2) for log in (False, True)
)
TREND_BETA: Final = 0.01
SEASON: Final = 7


def _hw(alpha: float, gamma: float) -> Any:
    return time_series.HoltWinters(  # type: ignore[no-untyped-call]
        alpha=alpha, beta=TREND_BETA, gamma=gamma, seasonality=SEASON
    )


def _start(m: Any, y: float) -> None:
    """River's start-up, corrected for an additive season: after one season of values the
    level is their mean, the trend 0 and the season the offsets ``y - level`` (River takes a
    trend from the first week's differences -- a Saturday spike becomes a lasting trend --
    and ratios ``y / level`` as additive offsets)."""
    m._first_values.append(y)
    if len(m._first_values) < SEASON:
        return
    level = sum(m._first_values) / SEASON
    m.level.append(level)
    m.trend.append(0.0)
    m.season.extend(v - level for v in m._first_values)
    m._initialized = True


def _hw_state(m: Any) -> dict[str, Any]:
    return {"level": list(m.level), "trend": list(m.trend), "season": list(m.season),
            "first": list(m._first_values), "ready": bool(m._initialized)}  # fmt: skip


def _hw_restore(m: Any, s: dict[str, Any]) -> None:
    m.level.extend(float(v) for v in s["level"])
    m.trend.extend(float(v) for v in s["trend"])
    m.season.extend(float(v) for v in s["season"])
    m._first_values = [float(v) for v in s["first"]]
    m._initialized = bool(s["ready"])


class Selector:
    """One metric: every grid member learns each day; :meth:`forecast` is the member with
    the lowest exponentially weighted absolute error of its resolved forecasts.

    >>> s = Selector(horizon=2, grid=((0.2, 0.1, False), (0.2, 0.1, True)))
    >>> for y in [10, 10, 10, 10, 10, 10, 20] * 3:
    ...     s.learn(y)
    >>> [round(v) for v in s.forecast()], s.best in (0, 1)
    ([10, 10], True)
    """

    def __init__(
        self, horizon: int = 7, grid: tuple[tuple[float, float, bool], ...] = DEFAULT_GRID,
        decay: float = 0.99,
    ) -> None:  # fmt: skip
        if horizon < 1 or not grid or not 0 < decay < 1:
            raise ValueError("horizon >= 1, a non-empty grid and 0 < decay < 1 are required")
        self.horizon, self.grid, self.decay = horizon, tuple(grid), decay
        self.models = [_hw(a, g) for a, g, _ in self.grid]
        self.errors = [0.0] * len(self.grid)  # EW mean absolute error per member
        #: forecasts not yet fully resolved: (days learned when made, one list per member)
        self.pending: deque[tuple[int, list[list[float]]]] = deque()
        self.days = 0
        #: the members' forecasts since the last day learned (``forecast`` and ``learn``
        #: both need them; a day's panel asks for them before it learns)
        self._made: list[list[float]] | None = None

    @property
    def ready(self) -> bool:
        """Whether the members have seen a full season (they can forecast)."""
        return bool(self.models[0]._initialized)

    @property
    def best(self) -> int:
        """Index of the member whose recent forecasts erred least (the first on a tie)."""
        return min(range(len(self.grid)), key=lambda i: (self.errors[i], i))

    def _member_forecasts(self) -> list[list[float]]:
        """Each member's next ``horizon`` days, clipped at 0 (back from ``log1p`` first):
        River's ``HoltWinters.forecast`` of an additive model with trend and season, in the
        same operations and order (``level + (h + 1) * trend + season[h - SEASON]``, so the
        same floats: ``tests/unit/models/test_forecast.py``), computed once per day learned."""
        if self._made is not None:
            return self._made
        out = []
        exp, finite, horizon = math.expm1, math.isfinite, self.horizon
        for m, (_, _, log) in zip(self.models, self.grid, strict=True):
            level, trend, season = m.level[-1], m.trend[-1], m.season
            row = []
            for h in range(horizon):
                v = level + (h + 1) * trend + season[h % SEASON - SEASON]
                if log:
                    v = exp(min(v, 700.0))
                row.append((v if v >= 0.0 else 0.0) if finite(v) else 0.0)  # max(v, 0.0)
            out.append(row)
        self._made = out
        return out

    def forecast(self) -> list[float]:
        """The next ``horizon`` days (from the day after the last one learned); zeros until
        a full season has been learned."""
        if not self.ready:
            return [0.0] * self.horizon
        return list(self._member_forecasts()[self.best])

    def learn(self, y: float) -> None:
        """Learn one day's total: score the forecasts made for this day, then update."""
        if self.ready:  # this day's forecasts, before it is learned: one per origin
            self.pending.append((self.days, self._member_forecasts()))
        for origin, fs in self.pending:
            h = self.days - origin
            if 0 <= h < self.horizon:
                d = self.decay
                self.errors = [d * e + (1 - d) * abs(f[h] - y) for e, f in
                               zip(self.errors, fs, strict=True)]  # fmt: skip
        while self.pending and self.pending[0][0] <= self.days - self.horizon + 1:
            self.pending.popleft()
        yv = max(float(y), 0.0)
        for m, (_, _, log) in zip(self.models, self.grid, strict=True):
            v = math.log1p(yv) if log else yv
            if m._initialized:
                m.learn_one(v)
            else:
                _start(m, v)
        self.days += 1
        self._made = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon, "grid": [list(g) for g in self.grid], "decay": self.decay,
            "models": [_hw_state(m) for m in self.models], "errors": self.errors,
            "days": self.days,
            "pending": [[o, fs] for o, fs in self.pending],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Selector:
        grid = tuple((float(a), float(g), bool(log)) for a, g, log in d["grid"])
        s = cls(int(d["horizon"]), grid, float(d["decay"]))
        if len(d["models"]) != len(grid) or len(d["errors"]) != len(grid):
            raise ValueError("forecast state: one model and one error per grid member")
        for m, st in zip(s.models, d["models"], strict=True):
            _hw_restore(m, st)
        s.errors = [float(e) for e in d["errors"]]
        s.days = int(d["days"])
        s.pending = deque((int(o), [[float(v) for v in f] for f in fs]) for o, fs in d["pending"])
        return s


def day_of(ts_ms: int) -> int:
    """The UTC day number (days since 1970-01-01) of an event time."""
    return ts_ms // DAY_MS


def iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, tz=UTC).date().isoformat()


class SalesForecaster:
    """Daily orders and revenue, learned in event time; forecasts the next ``horizon`` days.

    ``observe`` takes purchases in event-time order; a purchase of a day already learned
    (late) is counted into the current day, never lost. ``max_gap_days`` bounds the zeros
    learned across a jump in event time (a clock far in the future does not cost a loop of
    years): beyond it the models restart from the new day.
    """

    def __init__(self, horizon: int = 7, decay: float = 0.99, max_gap_days: int = 366) -> None:
        self.horizon, self.decay, self.max_gap_days = horizon, decay, max_gap_days
        self.metrics = {k: Selector(horizon, DEFAULT_GRID, decay) for k in METRICS}
        self.day = -1  # the day being summed (-1: nothing seen yet)
        self.orders = 0
        self.revenue = 0.0

    def observe(self, ts_ms: int, amount: float, orders: int = 1) -> None:
        """One order of ``amount`` at event time ``ts_ms`` (or ``orders`` orders worth
        ``amount`` in all: a day's totals at once)."""
        self.advance(ts_ms)
        if self.day < 0:
            self.day = day_of(ts_ms)
        self.orders += orders
        self.revenue += amount if math.isfinite(amount) else 0.0

    def advance(self, now_ms: int) -> None:
        """Move event time to ``now_ms``: learn every day that ended before it."""
        day = day_of(now_ms)
        if self.day < 0 or day <= self.day:
            return
        if day - self.day > self.max_gap_days:
            self.metrics = {k: Selector(self.horizon, DEFAULT_GRID, self.decay) for k in METRICS}
            self.day, self.orders, self.revenue = day, 0, 0.0
            return
        while self.day < day:
            self.metrics["orders"].learn(self.orders)
            self.metrics["revenue"].learn(self.revenue)
            self.day, self.orders, self.revenue = self.day + 1, 0, 0.0

    def forecast(self) -> list[dict[str, Any]]:
        """``[{"day", "orders", "revenue"}]`` for the current day and the ones after it
        (the current day is not learned yet: its forecast stands until it is over)."""
        if self.day < 0:
            return []
        o, r = self.metrics["orders"].forecast(), self.metrics["revenue"].forecast()
        return [{"day": iso_day(self.day + h), "orders": o[h], "revenue": r[h]}
                for h in range(self.horizon)]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "horizon": self.horizon, "decay": self.decay,
            "max_gap_days": self.max_gap_days, "day": self.day, "orders": self.orders,
            "revenue": self.revenue, "metrics": {k: s.to_dict() for k, s in self.metrics.items()},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SalesForecaster:
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"forecast state version {d.get('version')!r} is not {STATE_VERSION}")
        f = cls(int(d["horizon"]), float(d["decay"]), int(d["max_gap_days"]))
        f.day, f.orders, f.revenue = int(d["day"]), int(d["orders"]), float(d["revenue"])
        f.metrics = {k: Selector.from_dict(d["metrics"][k]) for k in METRICS}
        return f
