"""``GET /dashboard``, its data ``GET /api/dashboard``, and ``GET /metrics``.

The page is self-contained (inline CSS + JS, SVG charts, no CDN). It polls
``GET /api/dashboard``, which merges the telemetry snapshot with what only the shop's data
can say: trending items and the strongest similar-item pairs, read from the Redis similarity
store by :class:`ShopData` (cached for a couple of seconds, never raising: a Redis outage
shows as ``store_error``), and the business panels (``business``: revenue, the funnel, the
forecast, the coupons' uplift, for the date range ``?from=&to=``; :mod:`.business`).
``GET /metrics`` is the same telemetry in Prometheus' format.

>>> pairs = top_pairs({"a": [("b", 0.9), ("c", 0.2)], "b": [("a", 0.7)]}, k=5)
>>> [(p["a"], p["b"], p["score"]) for p in pairs]
[('a', 'b', 0.9), ('a', 'c', 0.2)]
>>> html = page()  # self-contained: nothing is loaded from elsewhere
>>> "<svg" in html and "<script src" not in html and "<link" not in html and "@import" not in html
True
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final

from models.segments import LABELS
from streams.telemetry import CONTENT_TYPE, Telemetry
from streams.web.business import BusinessData, parse_range
from streams.worker.context import ShopApp

log = logging.getLogger(__name__)

TRENDING_K: Final = 10
PAIR_SOURCES: Final = 8  # trending items whose neighbours are read for the pairs table
PAIRS_K: Final = 10
CACHE_S: Final = 2.0


@functools.cache
def page() -> str:
    """The dashboard HTML (package data ``streams/web/static/dashboard.html``)."""
    return resources.files("streams.web").joinpath("static/dashboard.html").read_text("utf-8")


def top_pairs(
    neighbours: Mapping[str, Sequence[tuple[str, float]]], k: int = PAIRS_K
) -> list[dict[str, Any]]:
    """Unordered item pairs with their strongest similarity, best first."""
    best: dict[tuple[str, str], float] = {}
    for a, items in neighbours.items():
        for b, score in items:
            if a == b:
                continue
            key = (a, b) if a < b else (b, a)
            best[key] = max(best.get(key, 0.0), float(score))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [{"a": a, "b": b, "score": round(s, 4)} for (a, b), s in ranked]


class ShopData:
    """Trending items and similar pairs from the similarity store, briefly cached."""

    def __init__(self, shop: ShopApp, *, cache_s: float = CACHE_S) -> None:
        self.shop = shop
        self.cache_s = cache_s
        self._at = -1e18
        self._value: dict[str, Any] = {}

    async def get(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._at < self.cache_s:
            return self._value
        value: dict[str, Any] = {"segment_labels": LABELS, "trending": [], "pairs": []}
        try:
            store = self.shop.runtime.store
            trending = await store.popular(TRENDING_K)
            neighbours = {i: await store.similar(i, 3) for i, _ in trending[:PAIR_SOURCES]}
            value["trending"] = [{"item_id": i, "score": round(s, 4)} for i, s in trending]
            value["pairs"] = top_pairs(neighbours)
        except Exception as exc:  # noqa: BLE001 - the dashboard reports, never fails
            log.warning("dashboard could not read the similarity store: %r", exc)
            value["store_error"] = repr(exc)[:200]
        self._at, self._value = now, value
        return value


def register(shop: ShopApp, telemetry: Telemetry) -> None:
    """Add ``GET /dashboard``, ``GET /api/dashboard`` and ``GET /metrics``."""
    data, business = ShopData(shop), BusinessData(shop)

    @shop.app.page("/dashboard")
    async def dashboard(web: Any, request: Any) -> Any:
        return web.html(page(), headers={"Cache-Control": "no-store"})

    @shop.app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(telemetry.render(), headers={"Content-Type": CONTENT_TYPE})

    @shop.app.page("/api/dashboard")
    async def dashboard_api(web: Any, request: Any) -> Any:
        try:  # ?from=&to=: the date range of the business panels
            first, last = parse_range(request.query)
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        snap = telemetry.snapshot()
        snap.update(await data.get())
        snap["business"] = await business.get(first, last)
        return web.json(snap, headers={"Cache-Control": "no-store"})
