"""The business figures over HTTP: ``GET /kpis``, ``GET /campaigns`` and
``GET /experiments`` (admin), and the ``business`` part of ``GET /api/dashboard``.

Everything is read from the KPI store in Redis (:mod:`streams.worker.kpi_store`), so it
survives restarts and every worker answers the same. A date range is two ISO dates
(``?from=2024-03-01&to=2024-03-31``, both included; ``from`` after ``to`` is an empty
range); without one, the 30 days up to the
latest event-time day the shop has seen.

>>> parse_range({"from": "2024-03-01", "to": "2024-03-31"})
('2024-03-01', '2024-03-31')
>>> parse_range({"from": "2024-3-1"})
Traceback (most recent call last):
...
ValueError: from must be a date YYYY-MM-DD
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar, cast

from models.forecast import DAY_MS, iso_day
from streams.domain.business import forecast_panel, uplift_panel, with_outcome
from streams.domain.experiments import rec_experiment
from streams.domain.kpis import day_number, totals
from streams.worker.configs import rec_arms
from streams.worker.context import ShopApp
from streams.worker.kpi_store import KpiStore

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_DAYS: Final = 30
CACHE_S: Final = 2.0
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _valid_date(value: str) -> bool:
    try:
        day_number(value)
    except ValueError:
        return False
    return bool(_DATE.fullmatch(value))


def parse_range(query: Mapping[str, str]) -> tuple[str, str]:
    """``(from, to)`` of a query string ('' where not given); ValueError if malformed
    (an empty value too: leave the parameter out)."""
    out = []
    for name in ("from", "to"):
        value = query.get(name)
        if value is not None and not _valid_date(value):
            raise ValueError(f"{name} must be a date YYYY-MM-DD")
        out.append(value or "")
    return out[0], out[1]


async def figures_in(kpis: KpiStore, first: str, last: str) -> dict[str, Any]:
    """The days of a range (default: the last 30 up to the clock) with their totals."""
    clock = await kpis.clock()
    today = iso_day(clock // DAY_MS) if clock >= 0 else ""
    if not last:
        last = today
    if not first and last:
        first = iso_day(day_number(last) - DEFAULT_DAYS + 1)
    days = await kpis.days(first, last) if last else []
    return {"from": first, "to": last, "today": today, "days": days, "totals": totals(days)}


def uplift_by_tier(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall, per coupon tier and per segment (alerts with their outcome: the segment is
    the one the alert named)."""
    tiers = sorted({a["tier"] for a in alerts})
    segments = sorted({a["segment"] for a in alerts if a["segment"]})
    return uplift_panel(alerts) | {
        "tiers": {t: uplift_panel([a for a in alerts if a["tier"] == t]) for t in tiers},
        "segments": {
            s: uplift_panel([a for a in alerts if a["segment"] == s]) for s in segments
        },
    }


async def campaigns(kpis: KpiStore, memo: Memo | None = None) -> dict[str, Any]:
    """The churn coupons' uplift, overall, per coupon tier and per segment: the tally's
    alerts, each with its outcome (``shop.alert-outcomes``) once it was published."""
    outcomes = await kpis.outcomes()
    alerts = [with_outcome(a, outcomes.get(a["alert_id"]))
              for a in sorted(await kpis.alerts(), key=lambda a: a["alert_id"])]  # fmt: skip
    key = tuple((a["alert_id"], a["resolved"], a["revenue"], a["discount"]) for a in alerts)
    panel = await (memo or Memo()).get(key, uplift_by_tier, alerts)
    return panel | {"horizon_days": kpis.horizon_ms / DAY_MS}


class Memo:
    """The last result of a pure panel function, recomputed (in a thread: a bootstrap or a
    forecast fit takes a few hundred ms) only when its input changed.

    >>> import asyncio
    >>> m, calls = Memo(), []
    >>> def f(x):
    ...     calls.append(x)
    ...     return x * 2
    >>> asyncio.run(m.get((1,), f, 1)), asyncio.run(m.get((1,), f, 1)), calls
    (2, 2, [1])
    """

    def __init__(self) -> None:
        self.key: Any = None
        self.value: Any = None

    async def get(self, key: Any, fn: Callable[..., T], *args: Any) -> T:
        if self.key != key:
            self.value, self.key = await asyncio.to_thread(fn, *args), key
        return cast(T, self.value)


class BusinessData:
    """The dashboard's business panels (figures, forecast, uplift), briefly cached."""

    def __init__(self, shop: ShopApp, *, cache_s: float = CACHE_S) -> None:
        self.shop, self.cache_s = shop, cache_s
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.forecasts, self.uplifts = Memo(), Memo()

    async def get(self, first: str, last: str) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._cache.get((first, last))
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        try:
            kpis = self.shop.runtime.kpis
            value = await figures_in(kpis, first, last)
            history = await kpis.series(value["today"]) if value["today"] else []
            key = (value["today"], tuple((d["day"], d["revenue"], d["orders"]) for d in history))
            value["forecast"] = (
                await self.forecasts.get(key, forecast_panel, history, value["today"])
                if history else None
            )  # fmt: skip
            value["uplift"] = await campaigns(kpis, self.uplifts)
            arms = rec_arms(self.shop.settings)
            value["experiment"] = rec_experiment(value["days"], arms.models, arms.share)
        except Exception as exc:  # noqa: BLE001 - the dashboard reports, never fails
            log.warning("dashboard could not read the business figures: %r", exc)
            value = {"error": repr(exc)[:200]}
        self._cache = {(first, last): (now, value)}
        return value


async def experiment_in(shop: ShopApp, first: str, last: str) -> dict[str, Any]:
    """The recommendation A/B test over a range of days (default: the last 30)."""
    value = await figures_in(shop.runtime.kpis, first, last)
    arms = rec_arms(shop.settings)
    return {"from": value["from"], "to": value["to"]} | rec_experiment(
        value["days"], arms.models, arms.share
    )


def register(shop: ShopApp) -> None:
    """Add ``GET /kpis``, ``GET /campaigns`` and ``GET /experiments``."""

    async def ranged(web: Any, request: Any, answer: Callable[[str, str], Awaitable[Any]]) -> Any:
        """``answer(from, to)`` of the request's date range, or 400 naming what is wrong."""
        try:
            first, last = parse_range(request.query)
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        return web.json(await answer(first, last))

    @shop.app.page("/experiments")
    async def experiments(web: Any, request: Any) -> Any:
        return await ranged(web, request, lambda a, b: experiment_in(shop, a, b))

    @shop.app.page("/kpis")
    async def kpis(web: Any, request: Any) -> Any:
        return await ranged(web, request, lambda a, b: figures_in(shop.runtime.kpis, a, b))

    @shop.app.page("/campaigns")
    async def campaigns_view(web: Any, request: Any) -> Any:
        return web.json(await campaigns(shop.runtime.kpis))
