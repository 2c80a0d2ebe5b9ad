"""The live A/B test of two recommendation settings, from the stored daily figures (pure).

Per arm (``A``, ``B``; docs/recommendations.md) over a range of days of
:func:`streams.domain.kpis.figures`:

* ``impressions``: published recommendations; ``clicks``: distinct ``rec_id`` s that a later
  view, cart or purchase carried (per day); ``ctr`` = clicks / impressions with its Wilson
  interval (:func:`models.uplift.wilson`);
* ``buys``: distinct ``rec_id`` s a purchase carried; ``conversion`` = buys / impressions
  with its Wilson interval; ``revenue`` (attributed: purchases carrying a ``rec_id``) and
  ``revenue_per_impression``;
* ``difference``: A - B of the CTR and of the conversion, with Newcombe's interval
  (:func:`models.uplift.newcombe`); ``None`` while an arm has no impressions.

Clicks and buys are capped at the impressions of their arm (a forged or stale ``rec_id``
cannot make a rate above 1).

>>> days = [{"recs": {"A": {"rec_shown": 70, "rec_clicks": 56, "rec_buys": 7,
...                          "rec_revenue": 140.0},
...                   "B": {"rec_shown": 80, "rec_clicks": 48, "rec_buys": 0,
...                         "rec_revenue": 0.0}}}]
>>> e = rec_experiment(days, {"A": "m", "B": "m+two_hop=0"}, b_share=0.5)
>>> e["arms"]["A"]["ctr"], e["arms"]["A"]["revenue_per_impression"], e["arms"]["B"]["model"]
(0.8, 2.0, 'm+two_hop=0')
>>> e["difference"]["ctr"]                       # Newcombe's example: 0.2 [0.0524, 0.3339]
{'estimate': 0.2, 'low': 0.0524, 'high': 0.3339}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from models.uplift import newcombe, wilson

ARMS: Final = ("A", "B")


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _arm(counts: Mapping[str, float], model: str) -> dict[str, Any]:
    n = int(counts.get("rec_shown", 0))
    clicks = min(int(counts.get("rec_clicks", 0)), n)
    buys = min(int(counts.get("rec_buys", 0)), n)
    revenue = round(float(counts.get("rec_revenue", 0.0)), 2)
    ctr_lo, ctr_hi = wilson(clicks, n)
    conv_lo, conv_hi = wilson(buys, n)
    return {
        "model": model,
        "impressions": n,
        "clicks": clicks,
        "ctr": _r(clicks / n) if n else None,
        "ctr_low": _r(ctr_lo), "ctr_high": _r(ctr_hi),
        "buys": buys,
        "conversion": _r(buys / n) if n else None,
        "conversion_low": _r(conv_lo), "conversion_high": _r(conv_hi),
        "revenue": revenue,
        "revenue_per_impression": round(revenue / n, 4) if n else None,
    }  # fmt: skip


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], key: str) -> dict[str, float | None]:
    d, lo, hi = newcombe(a[key], a["impressions"], b[key], b["impressions"])
    return {"estimate": _r(d), "low": _r(lo), "high": _r(hi)}


def rec_experiment(
    days: Iterable[Mapping[str, Any]], models: Mapping[Any, str], b_share: float
) -> dict[str, Any]:
    """The experiment over ``days`` (each with its ``recs``: arm -> counters)."""
    sums: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
    for day in days:
        for arm, counters in day.get("recs", {}).items():
            row = sums.setdefault(arm, {})
            for name, v in counters.items():
                row[name] = row.get(name, 0) + v
    arms = {arm: _arm(sums.get(arm, {}), models.get(arm, "")) for arm in ARMS}
    a, b = arms["A"], arms["B"]
    return {
        "b_share": b_share,
        "arms": arms,
        "difference": {"ctr": _diff(a, b, "clicks"), "conversion": _diff(a, b, "buys"),
                       "revenue_per_impression": (
                           round(a["revenue_per_impression"] - b["revenue_per_impression"], 4)
                           if a["impressions"] and b["impressions"] else None)},
    }  # fmt: skip
