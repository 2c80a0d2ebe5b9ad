"""The recommendation A/B test's figures: CTR and conversion with Wilson intervals, A - B with
Newcombe's, from the daily per-arm counters (streams.domain.experiments)."""

from __future__ import annotations

import pytest

from models.uplift import newcombe, wilson
from streams.domain.experiments import rec_experiment

MODELS = {"A": "cooc-session-v1", "B": "cooc-session-v1+two_hop=0"}


def day(a: tuple[int, int, int, float], b: tuple[int, int, int, float]) -> dict[str, object]:
    names = ("rec_shown", "rec_clicks", "rec_buys", "rec_revenue")
    return {"recs": {"A": dict(zip(names, a, strict=True)), "B": dict(zip(names, b, strict=True))}}


def test_rates_intervals_and_the_difference_sum_the_days() -> None:
    days = [day((100, 12, 3, 60.0), (90, 4, 1, 10.0)), day((50, 6, 0, 0.0), (60, 5, 2, 35.5))]
    e = rec_experiment(days, MODELS, b_share=0.5)
    a, b = e["arms"]["A"], e["arms"]["B"]
    assert (a["impressions"], a["clicks"], a["buys"], a["revenue"]) == (150, 18, 3, 60.0)
    assert (b["impressions"], b["clicks"], b["buys"], b["revenue"]) == (150, 9, 3, 45.5)
    assert a["ctr"] == 0.12 and b["model"] == MODELS["B"] and e["b_share"] == 0.5
    lo, hi = wilson(18, 150)
    assert (a["ctr_low"], a["ctr_high"]) == (round(lo, 4), round(hi, 4))
    d, lo, hi = newcombe(18, 150, 9, 150)
    assert e["difference"]["ctr"] == {"estimate": round(d, 4), "low": round(lo, 4),
                                      "high": round(hi, 4)}  # fmt: skip
    assert e["difference"]["conversion"]["estimate"] == 0.0
    assert e["difference"]["revenue_per_impression"] == pytest.approx(0.4 - 45.5 / 150, abs=1e-4)


def test_no_experiment_and_forged_clicks() -> None:
    e = rec_experiment([], MODELS, b_share=0.0)
    assert e["arms"]["A"]["impressions"] == 0 and e["arms"]["A"]["ctr"] is None
    assert e["difference"]["ctr"] == {"estimate": None, "low": -1.0, "high": 1.0}
    # more clicked rec ids than impressions (forged or stale ids): capped, a rate <= 1
    forged = rec_experiment([day((3, 9, 5, 1.0), (0, 2, 0, 0.0))], MODELS, b_share=0.1)
    assert forged["arms"]["A"]["ctr"] == 1.0 and forged["arms"]["A"]["conversion"] == 1.0
    assert forged["arms"]["B"]["clicks"] == 0 and forged["arms"]["B"]["ctr"] is None
