"""The output contract: one typed payload per output topic (README "What comes out").

The worker builds these with keyword arguments and publishes them as JSON (orjson), keyed by
``user_id``. Every payload carries a deterministic id of what caused it (``trigger_event_id``,
``alert_id``, ``anomaly_id``, or user + ``ts`` for a segment change), so a consumer can drop
the duplicates that at-least-once delivery may bring.

>>> item: ScoredItem = {"item_id": "sku-7", "score": 0.5}
>>> sorted(Recommendation.__annotations__)
['items', 'model', 'session_id', 'trigger_event_id', 'ts', 'user_id']
"""

from __future__ import annotations

from typing import Literal, TypedDict

#: A churn alert's experiment group: ``treatment`` gets the coupon, ``holdout`` does not.
AlertGroup = Literal["treatment", "holdout"]


class ScoredItem(TypedDict):
    item_id: str
    score: float


class Recommendation(TypedDict):
    """``shop.recommendations``: the session's next items after a view, cart or purchase."""

    user_id: str
    session_id: str
    items: list[ScoredItem]
    trigger_event_id: str
    ts: str  # ISO-8601 UTC with milliseconds: the trigger event's time
    model: str


class Reason(TypedDict):
    feature: str
    contribution: float


class CouponAction(TypedDict):
    type: str  # "coupon"
    value_tier: str
    discount_pct: float
    customer_value: float
    idle_days: float


class ChurnAlert(TypedDict):
    """``shop.churn-alerts``: one per idle episode of a customer the model scores at risk."""

    alert_id: str
    user_id: str
    probability: float
    threshold: float
    reasons: list[Reason]
    segment: str
    action: CouponAction
    ts: int  # event time (epoch ms) at which the customer was found idle
    model_version: str
    group: AlertGroup  # by a hash of alert_id (SHOPSTREAM_ALERT_HOLDOUT_SHARE)


class Rfm(TypedDict):
    r: int
    f: int
    m: int


class SegmentChange(TypedDict):
    """``shop.segments``: a customer's named segment changed."""

    user_id: str
    segment: str
    previous: str | None
    rfm: Rfm
    cluster: int
    ts: int


class Anomaly(TypedDict):
    """``shop.anomalies``: a bot, a large order, a price outlier or unusual activity."""

    anomaly_id: str
    user_id: str
    kind: str
    score: float
    reason: str
    event_id: str
    ts: int


class ForecastDay(TypedDict):
    day: str  # ISO date (UTC, event time)
    revenue: float
    orders: float


class Forecast(TypedDict):
    """``shop.forecasts``: daily revenue and orders of one scope for the 7 days from
    ``origin``, made from the complete days before it (keyed by ``scope``)."""

    forecast_id: str  # "forecast:<scope>:<origin>"
    scope: str  # "shop" or "category:<name>"
    origin: str  # ISO date: the first day forecast; every earlier day was complete
    days: list[ForecastDay]
    mae: float | None  # recent error: one-day-ahead revenue forecasts of the last 28 days
    baseline_mae: float | None  # seasonal naive (same weekday a week before), same days
    n: int  # days the recent error is measured on
    history_days: int  # days learned (at most HISTORY_DAYS before the origin)
    model: str
