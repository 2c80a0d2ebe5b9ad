"""The ``shop.churn-alerts`` payload: deterministic ids, reasons, value tiers.

>>> alert_id("u1", 1_704_067_200_000)
'426ac68871d9569df89768de232457b7'
>>> tier_for(250.0, DEFAULT_TIERS).name
'silver'
>>> alert_group("426ac68871d9569df89768de232457b7", 0.1)
'treatment'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

from streams.core.payloads import AlertGroup, ChurnAlert
from streams.core.settings import Settings
from streams.core.values import coupon_tiers
from streams.domain.profile import Profile


class Tier(NamedTuple):
    """A customer value tier: ``min_value`` of lifetime spend and the coupon it earns."""

    name: str
    min_value: float
    discount_pct: float


def tiers(text: str) -> tuple[Tier, ...]:
    """The tiers of ``SHOPSTREAM_COUPON_TIERS`` (``name:min_value:discount_pct,...``)."""
    return tuple(Tier(*t) for t in coupon_tiers(text))


#: Highest first; a customer gets the first tier whose ``min_value`` they reach.
DEFAULT_TIERS = tiers(Settings().coupon_tiers)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPolicy:
    """How an alert is made: the threshold it passed, the coupon tiers, how many reasons."""

    threshold: float
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    top_reasons: int = 3
    segment: str = "unassigned"  # until the segment step fills it in
    holdout_share: float = Settings().alert_holdout_share


def alert_id(user_id: str, episode_start_ms: int) -> str:
    """Deterministic id of the alert for one idle episode (consumers de-duplicate on it)."""
    return hashlib.sha256(f"{user_id}\x1f{episode_start_ms}".encode()).hexdigest()[:32]


def alert_group(alert_id: str, holdout_share: float) -> AlertGroup:
    """The alert's randomised group: ``holdout`` for a ``holdout_share`` of alert ids.

    A salted hash of the id, so the group is as good as random, independent of the customer,
    and the same on every worker and in every replay.
    """
    digest = hashlib.sha256(f"holdout\x1f{alert_id}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:8], "big") < holdout_share * 2**64 else "treatment"


def split_stale(
    alerts: list[ChurnAlert], now_ms: int, max_age_ms: int
) -> tuple[list[ChurnAlert], list[ChurnAlert]]:
    """``(to publish, stale)``: an alert whose event time ``ts`` is more than ``max_age_ms``
    before the wall clock ``now_ms`` is stale (history being imported: its idle episode
    ended long ago, a coupon would come too late). ``max_age_ms`` 0 keeps every alert.

    >>> a = [{"ts": 1_000}, {"ts": 9_000}]
    >>> split_stale(a, now_ms=10_000, max_age_ms=5_000)
    ([{'ts': 9000}], [{'ts': 1000}])
    """
    if max_age_ms <= 0:
        return alerts, []
    fresh = [a for a in alerts if now_ms - a["ts"] <= max_age_ms]
    return fresh, [a for a in alerts if now_ms - a["ts"] > max_age_ms]


def tier_for(value: float, tiers: tuple[Tier, ...]) -> Tier:
    return next((t for t in tiers if value >= t.min_value), tiers[-1])


def build_alert(
    uid: str,
    p: Profile,
    x: dict[str, float],
    prob: float,
    *,
    episode_start_ms: int,
    now_ms: int,
    contributions: dict[str, float],
    model_version: str,
    policy: AlertPolicy,
) -> ChurnAlert:
    """The alert; ``reasons`` are the features pushing hardest towards churn."""
    top = sorted(contributions.items(), key=lambda kv: (-kv[1], kv[0]))[: policy.top_reasons]
    tier = tier_for(p.monetary, policy.tiers)
    aid = alert_id(uid, episode_start_ms)
    return {
        "alert_id": aid,
        "user_id": uid,
        "probability": round(prob, 4),
        "threshold": policy.threshold,
        "reasons": [{"feature": k, "contribution": round(v, 4)} for k, v in top],
        "segment": policy.segment,
        "action": {
            "type": "coupon",
            "value_tier": tier.name,
            "discount_pct": tier.discount_pct,
            "customer_value": round(p.monetary, 2),
            "idle_days": round(x["idle_days"], 2),
        },
        "ts": now_ms,
        "model_version": model_version,
        "group": alert_group(aid, policy.holdout_share),
    }
