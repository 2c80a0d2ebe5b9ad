"""The business figures of a list of contract events, computed here from the definitions
in docs/dashboard.md, independently of streams.domain.kpis (what the worker must show)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any


def utc_day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).date().isoformat()


def expected_days(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per UTC day: revenue, orders (sessions that bought), funnel (sessions per stage),
    sessions that carted and bought, cart abandonment."""
    revenue: dict[str, float] = defaultdict(float)
    stages: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        day = utc_day(e["ts"])
        stage = {"view": "view", "add_to_cart": "cart", "purchase": "purchase"}.get(e["type"])
        if stage is None:
            continue
        stages[day, stage].add(e["session_id"])
        if stage == "purchase":
            revenue[day] += e.get("price", 0.0) * e.get("quantity", 1)
    days = sorted({d for d, _ in stages})
    out = {}
    for d in days:
        view, cart, buy = (stages[d, s] for s in ("view", "cart", "purchase"))
        out[d] = {
            "revenue": round(revenue[d], 2), "orders": len(buy),
            "funnel": {"view": len(view), "cart": len(cart), "purchase": len(buy)},
            "cart_purchase": len(cart & buy),
        }  # fmt: skip
    return out


def range_totals(days: dict[str, dict[str, Any]], first: str, last: str) -> dict[str, Any]:
    rows = [v for d, v in days.items() if first <= d <= last]
    funnel = {s: sum(r["funnel"][s] for r in rows) for s in ("view", "cart", "purchase")}
    both = sum(r["cart_purchase"] for r in rows)
    revenue = math.fsum(r["revenue"] for r in rows)
    orders = sum(r["orders"] for r in rows)
    return {
        "revenue": round(revenue, 2), "orders": orders, "funnel": funnel,
        "aov": round(revenue / orders, 2) if orders else None,
        "cart_abandonment": (funnel["cart"] - both) / funnel["cart"] if funnel["cart"] else None,
    }  # fmt: skip
