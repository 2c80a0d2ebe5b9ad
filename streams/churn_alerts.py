"""The ``shop.churn-alerts`` payload (DESIGN §1): deterministic ids, reasons, value tiers.

>>> alert_id("u1", 1_704_067_200_000)
'426ac68871d9569df89768de232457b7'
>>> tier_for(250.0, DEFAULT_TIERS).name
'silver'
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from streams.profile import Profile

Alert = dict[str, Any]


class Tier(NamedTuple):
    """A customer value tier: ``min_value`` of lifetime spend and the coupon it earns."""

    name: str
    min_value: float
    discount_pct: float


#: Highest first; a customer gets the first tier whose ``min_value`` they reach.
DEFAULT_TIERS = (Tier("gold", 500.0, 20.0), Tier("silver", 100.0, 15.0), Tier("bronze", 0.0, 10.0))


def alert_id(user_id: str, episode_start_ms: int) -> str:
    """Deterministic id of the alert for one idle episode (consumers de-duplicate on it)."""
    return hashlib.sha256(f"{user_id}\x1f{episode_start_ms}".encode()).hexdigest()[:32]


def tier_for(value: float, tiers: tuple[Tier, ...]) -> Tier:
    return next((t for t in tiers if value >= t.min_value), tiers[-1])


def build_alert(
    uid: str,
    p: Profile,
    x: dict[str, float],
    prob: float,
    episode_start_ms: int,
    now_ms: int,
    contributions: dict[str, float],
    model_version: str,
    threshold: float,
    segment: str,
    tiers: tuple[Tier, ...],
    top_reasons: int,
) -> Alert:
    """The alert object; ``reasons`` are the features pushing hardest towards churn."""
    top = sorted(contributions.items(), key=lambda kv: (-kv[1], kv[0]))[:top_reasons]
    tier = tier_for(p.monetary, tiers)
    return {
        "alert_id": alert_id(uid, episode_start_ms),
        "user_id": uid,
        "probability": round(prob, 4),
        "threshold": threshold,
        "reasons": [{"feature": k, "contribution": round(v, 4)} for k, v in top],
        "segment": segment,
        "action": {
            "type": "coupon",
            "value_tier": tier.name,
            "discount_pct": tier.discount_pct,
            "customer_value": round(p.monetary, 2),
            "idle_days": round(x["idle_days"], 2),
        },
        "ts": now_ms,
        "model_version": model_version,
    }
