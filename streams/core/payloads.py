"""The output contract: one typed payload per output topic (README "What comes out").

The worker builds these with keyword arguments and publishes them as JSON (orjson), keyed by
``user_id``. Every payload carries a deterministic id of what caused it (``trigger_event_id``
and ``rec_id``, ``alert_id``, ``anomaly_id``, or user + ``ts`` for a segment change), so a
consumer can drop the duplicates that at-least-once delivery may bring.

>>> item: ScoredItem = {"item_id": "sku-7", "score": 0.5}
>>> sorted(Recommendation.__annotations__)
['arm', 'items', 'model', 'rec_id', 'session_id', 'trigger_event_id', 'ts', 'user_id']
"""

from __future__ import annotations

from typing import Literal, TypedDict

#: A churn alert's experiment group: ``treatment`` gets the coupon, ``holdout`` does not.
AlertGroup = Literal["treatment", "holdout"]
RecArm = Literal["A", "B"]


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
    model: str  # the scorer and, in arm B, its setting's overrides
    rec_id: str  # hash of user and trigger event; feedback events carry it back
    arm: RecArm  # the user's experiment arm (SHOPSTREAM_REC_ARM_B_SHARE)


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


class AlertOutcome(TypedDict):
    """``shop.alert-outcomes``: what a churn-alerted customer did within the horizon after
    the alert (treatment and holdout alike), published once the window is over in event
    time; ``alert_id`` joins it to the alert (its segment, reasons, probability)."""

    alert_id: str
    user_id: str
    group: AlertGroup
    tier: str  # the coupon's value tier
    discount_pct: float  # the coupon's discount (a holdout customer was not sent it)
    alert_ts: int  # event time of the alert (epoch ms)
    window_end_ts: int  # alert_ts + the churn horizon
    returned: bool  # bought at least once in (alert_ts, window_end_ts]
    orders: int
    revenue: float  # sum of price x quantity of those purchases
    days_to_return: float | None  # to the first of them
    segment: str  # the segment the alert named
    redeemed: bool  # one of them carried a coupon_code
    coupon_orders: int
    discount_cost: float  # those purchases' discount at the alert's discount_pct


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
