"""Alert outcomes: what a churn-alerted customer did within the horizon (issue 18).

Every churn alert opens a window ``(alert ts, alert ts + horizon]`` in event time, for the
treatment and the holdout group alike. While it is open, the customer's purchases are
counted in a :class:`Watched` entry of their churn track (so it is stored in the profile
envelope, fenced by the same offset, restored with the changelog and moved with the
partition); when the partition's clock passes the window's end plus the allowed lateness
(the same rule as the churn labels), the outcome is resolved and published once to
``shop.alert-outcomes`` (:class:`~streams.core.payloads.AlertOutcome`, keyed by the user,
identified by its ``alert_id``). A redelivered batch re-derives the same outcome from the
same stored track, so a repeat is the same record.

>>> w = watch({"alert_id": "a1", "ts": 0, "group": "treatment",
...            "action": {"value_tier": "gold", "discount_pct": 20.0}})
>>> count_purchase([w], ts_ms=3 * DAY_MS, amount=40.0, horizon_ms=90 * DAY_MS, coupon=True)
>>> count_purchase([w], ts_ms=91 * DAY_MS, amount=99.0, horizon_ms=90 * DAY_MS)  # too late
>>> o = outcome("u1", w, 90 * DAY_MS)
>>> o["returned"], o["orders"], o["revenue"], o["days_to_return"]
(True, 1, 40.0, 3.0)
>>> o["redeemed"], o["discount_cost"]         # 40 paid at 20 % off: a 50 price, 10 off
(True, 10.0)
>>> watched_from_list(watched_to_list(w)) == w
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.core.payloads import AlertGroup, AlertOutcome
from streams.domain.profile import DAY_MS


@dataclass(slots=True)
class Watched:
    """An alert whose outcome window is open, and what its customer did since."""

    alert_id: str
    ts_ms: int  # the alert's event time: the window is (ts_ms, ts_ms + horizon]
    group: AlertGroup
    tier: str
    discount_pct: float
    orders: int = 0
    revenue_cents: int = 0
    first_order_ms: int = -1
    coupon_orders: int = 0  # purchases in the window that carried a ``coupon_code``
    discount_cents: int = 0  # what those coupons cost the shop (at the alert's discount)
    segment: str = ""  # the customer's segment the alert named


def watch(alert: Mapping[str, Any]) -> Watched:
    """The open window of a just-made alert (a :class:`~streams.core.payloads.ChurnAlert`)."""
    action = alert.get("action") or {}
    return Watched(
        alert_id=str(alert["alert_id"]), ts_ms=int(alert["ts"]), group=alert["group"],
        tier=str(action.get("value_tier", "")), discount_pct=float(action.get("discount_pct", 0)),
        segment=str(alert.get("segment", "")),
    )  # fmt: skip


def count_purchase(
    watched: Sequence[Watched], *, ts_ms: int, amount: float, horizon_ms: int,
    coupon: bool = False,
) -> None:  # fmt: skip
    """Count a purchase of ``amount`` (what the customer paid) at ``ts_ms`` in every open
    window that holds it; with a ``coupon``, also the discount it cost: the alert's
    ``discount_pct`` of the full price, ``amount * pct / (100 - pct)``."""
    cents = round(amount * 100)
    for w in watched:
        if w.ts_ms < ts_ms <= w.ts_ms + horizon_ms:
            w.orders += 1
            w.revenue_cents += cents
            if w.first_order_ms < 0 or ts_ms < w.first_order_ms:
                w.first_order_ms = ts_ms
            if coupon:
                w.coupon_orders += 1
                pct = min(max(w.discount_pct, 0.0), 99.0)
                w.discount_cents += round(cents * pct / (100.0 - pct))


def outcome(user_id: str, w: Watched, horizon_ms: int) -> AlertOutcome:
    """The resolved outcome of ``w`` (its window is over)."""
    back = (w.first_order_ms - w.ts_ms) / DAY_MS if w.first_order_ms >= 0 else None
    return {
        "alert_id": w.alert_id,
        "user_id": user_id,
        "group": w.group,
        "tier": w.tier,
        "discount_pct": w.discount_pct,
        "alert_ts": w.ts_ms,
        "window_end_ts": w.ts_ms + horizon_ms,
        "returned": w.orders > 0,
        "orders": w.orders,
        "revenue": w.revenue_cents / 100,
        "days_to_return": None if back is None else round(back, 4),
        "segment": w.segment,
        "redeemed": w.coupon_orders > 0,
        "coupon_orders": w.coupon_orders,
        "discount_cost": w.discount_cents / 100,
    }


def watched_to_list(w: Watched) -> list[Any]:
    """Compact JSON form, stored in the churn track (``track_to_list``)."""
    return [w.alert_id, w.ts_ms, w.group, w.tier, w.discount_pct, w.orders, w.revenue_cents,
            w.first_order_ms, w.coupon_orders, w.discount_cents, w.segment]  # fmt: skip


def watched_from_list(v: Sequence[Any]) -> Watched:
    aid, ts, group, tier, pct, orders, cents, first, coupons, discount, segment = v
    return Watched(str(aid), int(ts), group, str(tier), float(pct), int(orders), int(cents),
                   int(first), int(coupons), int(discount), str(segment))  # fmt: skip


def name_segment(watched: Sequence[Watched], alert_id: str, segment: str) -> bool:
    """Record the segment the (just published) alert ``alert_id`` named; whether it changed."""
    for w in watched:
        if w.alert_id == alert_id and w.segment != segment:
            w.segment = segment
            return True
    return False
