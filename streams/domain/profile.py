"""Live customer profiles in event time, and the churn model's feature vector.

:func:`update_profile` is the per-event step (it runs at stream rate, so it updates the
profile in place and returns it instead of copying). Everything is event time: decayed
windows are anchored at the newest event seen, ``last_seen`` never moves backwards, and a
late event only adds what it can add exactly (decayed counts are exact for any arrival
order; a late purchase counts towards frequency and value but opens no interval).

>>> from streams.core.events import Event
>>> day = 86_400_000
>>> p = None
>>> for i, t in enumerate((0, 10, 20)):
...     p = update_profile(p, Event(f"e{i}", "purchase", "u1", f"s{i}", 1_704_067_200_000 + t * day,
...                                 item_id="i1", price=20.0))
>>> p.n_orders, p.monetary, p.ipi_mean
(3, 60.0, 10.0)
>>> f = features(p, p.last_seen_ms + 15 * day)
>>> f["recency_days"], round(f["recency_ratio"], 2)  # log1p(15 / 16.67), mean shrunk to 30d
(15.0, 0.64)
>>> Profile.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Final

from streams.core.events import Event

DAY_MS: Final = 86_400_000
#: Purchases closer than this to the previous one belong to the same order.
ORDER_GAP_MS: Final = 3_600_000
#: Time constants (days) of the decayed windows: a count "over the last ~tau days".
TAU_SHORT: Final = 7.0
TAU_MID: Final = 30.0
TAU_LONG: Final = 90.0
#: Categories kept for affinity (bounded memory: space-saving eviction of the smallest).
MAX_CATEGORIES: Final = 5
#: Prior mean inter-purchase interval (days) and its weight, for users with few intervals.
PRIOR_IPI_DAYS: Final = 30.0
PRIOR_WEIGHT: Final = 1.0
#: Generic prior churn hazard (per day) of the P(alive) feature (a Pareto/NBD-style
#: posterior that the customer is still active given their rhythm and silence).
PRIOR_HAZARD: Final = 1 / 180
#: Order weeks kept (``Profile.order_weeks``): enough to look a year back from any time
#: after the last order (a year is 52.2 weeks; the rest is slack for late purchases).
ORDER_WEEKS: Final = 60
WEEK_MS: Final = 7 * DAY_MS
YEAR_MS: Final = 365 * DAY_MS

#: The learned model's inputs (the analytic scorer's two are added by the churn logic).
#: All are *rates, ratios or logs* that stay meaningful however long the silence: lifetime
#: counts grow with the length of the stream and linear day counts (``recency_days``,
#: ``idle_days``) let a logistic model that learned them next to ``log_recency`` turn
#: around past the longest silence it has labels for (measured on real data: it scored
#: customers silent for a year as loyal; docs/churn.md). ``features`` still returns the
#: day counts, for alerts and the recency baseline.
FEATURE_NAMES: Final[tuple[str, ...]] = (
    "has_purchased",
    "log_recency",
    "log_idle",
    "recency_ratio",
    "overdue_z",
    "p_alive",
    "p_repeat_30d",
    "log_aov",
    "log_orders",
    "purchases_30d",
    "log_purchases_90d",
    "events_7d",
    "events_30d",
    "carts_since_purchase",
)


@dataclass(slots=True)
class Profile:
    """One customer's live profile. Timestamps are UTC epoch ms; ``-1`` means "never"."""

    user_id: str
    first_seen_ms: int
    last_seen_ms: int
    n_events: int = 0
    n_sessions: int = 0
    last_session_id: str = ""
    first_purchase_ms: int = -1
    last_purchase_ms: int = -1
    n_purchases: int = 0  # purchase lines
    n_orders: int = 0  # purchases more than ORDER_GAP_MS apart
    monetary: float = 0.0
    ipi_n: int = 0  # Welford statistics of inter-purchase intervals, in days
    ipi_mean: float = 0.0
    ipi_m2: float = 0.0
    decay_ref_ms: int = 0  # decayed counts below are valued at this instant
    events_short: float = 0.0
    events_mid: float = 0.0
    purchases_mid: float = 0.0
    purchases_long: float = 0.0
    cart_adds: int = 0
    carts_since_purchase: int = 0
    abandoned_carts: int = 0
    cart_session: str = ""  # session with cart additions and no purchase yet
    categories: dict[str, float] = field(default_factory=dict)
    # weeks with an order: bit i = an order in epoch week ``order_week - i`` (ORDER_WEEKS bits)
    order_weeks: int = 0
    order_week: int = -1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (a few hundred bytes serialised; orjson also serialises the
        dataclass itself to the same JSON, which is what the hot path does)."""
        d = {name: getattr(self, name) for name in _FIELDS}
        d["categories"] = dict(self.categories)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (forward compatible)."""
        p = cls(**{k: v for k, v in d.items() if k in _FIELD_SET})
        p.categories = dict(p.categories)
        return p


_FIELDS = tuple(f.name for f in fields(Profile))
_FIELD_SET = frozenset(_FIELDS)


def _decay(dt_ms: int, tau_days: float) -> float:
    return math.exp(-dt_ms / (tau_days * DAY_MS))


def _add_decayed(p: Profile, ts: int, purchase: bool) -> None:
    """Add one event to the decayed windows; exact for any arrival order."""
    if ts >= p.decay_ref_ms:
        dt = ts - p.decay_ref_ms
        if dt:
            fs, fm, fl = _decay(dt, TAU_SHORT), _decay(dt, TAU_MID), _decay(dt, TAU_LONG)
            p.events_short *= fs
            p.events_mid *= fm
            p.purchases_mid *= fm
            p.purchases_long *= fl
            p.decay_ref_ms = ts
        ws = wm = wl = 1.0
    else:  # late event: weigh it as it would have been weighed on arrival in order
        dt = p.decay_ref_ms - ts
        ws, wm, wl = _decay(dt, TAU_SHORT), _decay(dt, TAU_MID), _decay(dt, TAU_LONG)
    p.events_short += ws
    p.events_mid += wm
    if purchase:
        p.purchases_mid += wm
        p.purchases_long += wl


def _add_category(cats: dict[str, float], category: str) -> None:
    if category in cats:
        cats[category] += 1.0
    elif len(cats) < MAX_CATEGORIES:
        cats[category] = 1.0
    else:  # space-saving: the newcomer inherits the smallest count
        smallest = min(cats, key=cats.__getitem__)
        cats[category] = cats.pop(smallest) + 1.0


def _mark_order_week(p: Profile, ts: int) -> None:
    """Set the bit of ``ts``'s week in ``order_weeks`` (shifting the window to a newer week)."""
    week = ts // WEEK_MS
    if week > p.order_week:
        shift = min(week - p.order_week, ORDER_WEEKS) if p.order_week >= 0 else ORDER_WEEKS
        p.order_weeks = (p.order_weeks << shift) & ((1 << ORDER_WEEKS) - 1)
        p.order_week = week
    i = p.order_week - week
    if i < ORDER_WEEKS:  # a late purchase older than the kept weeks is not marked
        p.order_weeks |= 1 << i


def season_return(p: Profile, now_ms: int, horizon_days: float) -> float:
    """1.0 if ``p`` ordered in a week that lies within what was, a year before ``now_ms``,
    the coming horizon -- ``[now - 365 d, now - 365 d + H)``, H at most half a year (whole
    weeks only: never an order from outside it) --, else 0.0: a customer who may come back
    for the season (``models.season``).

    >>> from streams.core.events import Event
    >>> t0, day = 1_291_161_600_000, 86_400_000              # 2010-12-01
    >>> p = update_profile(None, Event("e1", "purchase", "u1", "s1", t0, price=5.0))
    >>> [season_return(p, t0 + d * day, 90.0) for d in (200, 280, 300, 330, 372)]
    [0.0, 1.0, 1.0, 1.0, 0.0]
    """
    if p.order_week < 0:
        return 0.0
    start = now_ms - YEAR_MS
    lo = -(-start // WEEK_MS)  # the first whole week inside, and the last one
    hi = (start + int(min(horizon_days, 182.5) * DAY_MS)) // WEEK_MS - 1
    for week in range(max(lo, p.order_week - ORDER_WEEKS + 1), min(hi, p.order_week) + 1):
        if p.order_weeks >> (p.order_week - week) & 1:
            return 1.0
    return 0.0


def _add_purchase(p: Profile, event: Event) -> None:
    ts = event.ts_ms
    _mark_order_week(p, ts)
    p.n_purchases += 1
    p.monetary += (event.price or 0.0) * (event.quantity or 1)
    if p.last_purchase_ms < 0:
        p.n_orders = 1
        p.first_purchase_ms = p.last_purchase_ms = ts
    elif ts > p.last_purchase_ms + ORDER_GAP_MS:
        p.n_orders += 1
        gap = (ts - p.last_purchase_ms) / DAY_MS
        p.ipi_n += 1
        delta = gap - p.ipi_mean
        p.ipi_mean += delta / p.ipi_n
        p.ipi_m2 += delta * (gap - p.ipi_mean)
        p.last_purchase_ms = ts
    elif ts < p.last_purchase_ms - ORDER_GAP_MS:
        # A late purchase: it is an order, but it cannot be placed between known ones.
        p.n_orders += 1
        p.first_purchase_ms = min(p.first_purchase_ms, ts)
    else:
        p.last_purchase_ms = max(p.last_purchase_ms, ts)
    if ts >= p.last_purchase_ms:
        p.carts_since_purchase = 0
        p.cart_session = ""


def update_profile(profile: Profile | None, event: Event) -> Profile:
    """Apply one event to a profile (created if ``None``); returns the same object, updated."""
    ts = event.ts_ms
    if profile is None:
        profile = Profile(event.user_id, ts, ts, decay_ref_ms=ts)
    p = profile
    p.n_events += 1
    if ts > p.last_seen_ms:
        p.last_seen_ms = ts
    if ts < p.first_seen_ms:
        p.first_seen_ms = ts
    if event.session_id != p.last_session_id:
        p.n_sessions += 1
        if p.cart_session and p.cart_session != event.session_id:
            p.abandoned_carts += 1
            p.cart_session = ""
        p.last_session_id = event.session_id
    etype = event.type
    _add_decayed(p, ts, etype == "purchase")
    if etype == "purchase":
        _add_purchase(p, event)
    elif etype == "add_to_cart":
        p.cart_adds += 1
        p.carts_since_purchase += 1
        p.cart_session = event.session_id
    if event.category and etype != "session_start":
        _add_category(p.categories, event.category)
    return p


def features(p: Profile, now_ms: int) -> dict[str, float]:
    """The churn features of ``p`` at event time ``now_ms`` (FEATURE_NAMES, and the day
    counts ``recency_days`` and ``idle_days``).

    Recency alone confuses a slow buyer with a lost one; the interval features put recency in
    units of the user's own rhythm (shrunk towards a prior when there are few intervals).
    """
    purchased = p.n_orders > 0
    since = p.last_purchase_ms if purchased else p.first_seen_ms
    recency = max(now_ms - since, 0) / DAY_MS
    idle = max(now_ms - p.last_seen_ms, 0) / DAY_MS
    mean = (p.ipi_n * p.ipi_mean + PRIOR_WEIGHT * PRIOR_IPI_DAYS) / (p.ipi_n + PRIOR_WEIGHT)
    std = math.sqrt(p.ipi_m2 / (p.ipi_n - 1)) if p.ipi_n > 1 else mean
    dt = max(now_ms - p.decay_ref_ms, 0)
    fs, fm, fl = _decay(dt, TAU_SHORT), _decay(dt, TAU_MID), _decay(dt, TAU_LONG)
    lam = 1.0 / max(mean, 0.5)
    surv = math.exp(-min((PRIOR_HAZARD + lam) * recency, 50.0))
    p_alive = surv / (surv + PRIOR_HAZARD / (PRIOR_HAZARD + lam) * (1.0 - surv))
    return {
        "has_purchased": 1.0 if purchased else 0.0,
        "recency_days": recency,
        "log_recency": math.log1p(recency),
        "idle_days": idle,
        "log_idle": math.log1p(idle),
        "recency_ratio": math.log1p(recency / max(mean, 0.5)),
        "overdue_z": max(min((recency - mean) / (std + 1.0), 10.0), -5.0),
        "p_alive": p_alive,
        "p_repeat_30d": p_alive * (1.0 - math.exp(-30.0 * lam)),
        "log_aov": math.log1p(p.monetary / p.n_orders) if purchased else 0.0,
        "log_orders": math.log1p(p.n_orders),
        "purchases_30d": p.purchases_mid * fm,
        "log_purchases_90d": math.log1p(p.purchases_long * fl),
        "events_7d": math.log1p(p.events_short * fs),
        "events_30d": math.log1p(p.events_mid * fm),
        "carts_since_purchase": float(min(p.carts_since_purchase, 20)),
    }
