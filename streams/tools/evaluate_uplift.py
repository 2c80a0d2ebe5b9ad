"""``shopstream evaluate uplift``: the coupon loop offline, with a known effect to recover.

1. A generated shop (:func:`streams.tools.generate.generate`, unchanged): its purchases are
   replayed in event time through the worker's churn step, exactly as ``evaluate churn``
   does (:func:`streams.tools.evaluate_churn.replay_history`, the worker's settings and
   scorers), which yields the churn alerts, each with its ``group`` from the worker's hash
   of ``alert_id`` (``SHOPSTREAM_ALERT_HOLDOUT_SHARE``).
2. Each customer's first alert whose horizon ``(ts, ts + H]`` lies inside the data is
   resolved: did the customer buy again in it, and for how much.
3. The coupon works with a known effect ``U`` on the return probability. The simulator
   knows each customer's future without a coupon (the generated purchases), so it can make
   the effect exact: a customer who would not have come back comes back with probability
   ``q = U / (1 - p0)`` (``p0``: the return rate of all resolved alerted customers without a
   coupon), which raises the return probability by ``U`` on average. The draw is a seeded
   hash of the alert id, made for every customer, but only the treatment group gets the
   coupon: it buys once more inside the horizon, its mean order so far.
4. Uplift = return rate of the treated - the holdout's, with Newcombe's interval; revenue per
   customer likewise, with a bootstrap interval (:mod:`models.uplift`).

``realised_uplift`` is the effect the draws actually built into this sample (every
customer's outcome with the coupon minus without it, both groups), next to ``true_uplift``
(``U``, its expectation). What is not simulated: alerts that a coupon's purchase would have
changed later on (the alerts come from the generated purchases only), discount cost.

>>> r = evaluate(users=150, seed=1, true_uplift=0.0, days=120)
>>> r["ci_low"] <= 0.0 <= r["ci_high"], r["realised_uplift"]
(True, 0.0)
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any

from models.uplift import bootstrap_diff, newcombe
from streams.core.errors import InputError
from streams.core.settings import Settings
from streams.domain.churn_state import ChurnConfig
from streams.domain.profile import DAY_MS
from streams.tools.evaluate_churn import Row, eval_settings, replay_history
from streams.tools.generate import DEFAULT_START_MS, generate
from streams.worker.configs import churn_scorers


@dataclass(slots=True)
class Resolved:
    """A customer's first resolved alert: its group, and what happened in the horizon."""

    alert_id: str
    group: str
    returned: bool
    revenue: float
    order_value: float  # mean order before the alert: what a coupon's purchase is worth


def _rate(cs: list[Resolved]) -> float:
    return sum(c.returned for c in cs) / len(cs) if cs else float("nan")


def _purchases(events: list[dict[str, Any]]) -> list[Row]:
    return [Row(e["user_id"], e["ts"], e.get("price", 0.0) * e.get("quantity", 1), i)
            for i, e in enumerate(events) if e["type"] == "purchase"]  # fmt: skip


def _draw(seed: int, alert_id: str) -> float:
    """The alert's uniform draw: whether the coupon works for this customer."""
    return random.Random(f"{seed}\x1f{alert_id}").random()  # noqa: S311 -- simulation


def evaluate(
    users: int, seed: int, true_uplift: float, days: int = 180,
    settings: Settings | None = None, resamples: int = 2000,
) -> dict[str, Any]:  # fmt: skip
    """Simulate, resolve, estimate (see the module's description)."""
    if not 0 <= true_uplift < 1:
        raise InputError("--true-uplift must be in [0, 1)")
    settings = settings or Settings()
    settings = eval_settings(settings, settings.churn_horizon_days)
    cfg = ChurnConfig.from_settings(settings)
    events, _ = generate(users, seed, days=days)
    rows = _purchases(events)
    end_ms = DEFAULT_START_MS + days * DAY_MS
    _, _, alerts = replay_history(rows, end_ms, cfg, churn_scorers(settings))
    horizon = cfg.horizon_ms
    bought: dict[str, list[tuple[int, float]]] = {}
    for r in sorted(rows, key=lambda r: (r.ts_ms, r.line)):
        bought.setdefault(r.user_id, []).append((r.ts_ms, r.amount))
    first: dict[str, tuple[int, str, str]] = {}  # user -> (ts, alert_id, group)
    for a in sorted(alerts, key=lambda a: (a["ts"], a["alert_id"])):
        if a["ts"] + horizon <= end_ms and a["user_id"] not in first:
            first[a["user_id"]] = (a["ts"], a["alert_id"], a["group"])
    resolved: list[Resolved] = []
    for uid, (ts, aid, group) in sorted(first.items()):
        mine = bought[uid]
        times = [t for t, _ in mine]
        i, j = bisect.bisect_right(times, ts), bisect.bisect_right(times, ts + horizon)
        before = [x for _, x in mine[:i]]
        resolved.append(Resolved(aid, group, j > i, sum(x for _, x in mine[i:j]),
                                 sum(before) / len(before) if before else 0.0))  # fmt: skip
    if not resolved:
        raise InputError(f"no alert could be resolved: {users} users, {days} days")
    p0 = _rate(resolved)
    if true_uplift > 1 - p0:
        raise InputError(f"--true-uplift {true_uplift} is above 1 - the base return rate {p0:.3f}")
    q = true_uplift / (1 - p0) if p0 < 1 else 0.0
    effect, revenue_effect = 0, 0.0
    for c in resolved:  # the coupon brings back a customer who was lost, with chance q
        gain = _draw(seed, c.alert_id) < q and not c.returned
        effect += gain
        revenue_effect += c.order_value if gain else 0.0
        if gain and c.group == "treatment":
            c.returned, c.revenue = True, c.revenue + c.order_value
    treated = [c for c in resolved if c.group == "treatment"]
    held = [c for c in resolved if c.group == "holdout"]
    d, lo, hi = newcombe(sum(c.returned for c in treated), len(treated),
                         sum(c.returned for c in held), len(held))  # fmt: skip
    rd, rlo, rhi = bootstrap_diff([c.revenue for c in treated], [c.revenue for c in held],
                                  seed=seed, resamples=resamples)  # fmt: skip
    return {
        "uplift": d, "ci_low": lo, "ci_high": hi, "true_uplift": true_uplift,
        "realised_uplift": effect / len(resolved),
        "return_rate_treated": _rate(treated), "return_rate_holdout": _rate(held),
        "base_return_rate": p0,
        "revenue_uplift": rd, "revenue_ci_low": rlo, "revenue_ci_high": rhi,
        "realised_revenue_uplift": revenue_effect / len(resolved),
        "n_treated": len(treated), "n_holdout": len(held), "alerts": len(alerts),
        "holdout_share": settings.alert_holdout_share, "horizon_days": cfg.horizon_days,
        "users": users, "seed": seed, "days": days,
    }  # fmt: skip
