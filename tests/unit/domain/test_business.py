"""The forecast and uplift panels (streams.domain.business)."""

from __future__ import annotations

from typing import Any

from models.forecast import iso_day
from models.uplift import newcombe, wilson
from streams.domain.business import forecast_panel, uplift_panel
from streams.domain.kpis import day_number

FIRST = day_number("2024-01-01")


def days(values: list[float], skip: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    return [{"day": iso_day(FIRST + i), "revenue": v, "orders": int(v > 0)}
            for i, v in enumerate(values) if i not in skip]  # fmt: skip


def test_the_recent_error_is_measured_on_days_the_model_had_not_learned() -> None:
    values = [100.0] * 27 + [1000.0]  # a spike on the last complete day
    p = forecast_panel(days(values), today=iso_day(FIRST + 28))
    last = p["recent"][-1]
    assert last["day"] == iso_day(FIRST + 27) and last["revenue"] == 1000.0
    assert last["forecast"] < 200  # forecast before the spike was learned
    assert last["naive"] == 100.0
    assert p["n"] == len(p["recent"]) == 28 - 7  # the model and seasonal naive: after a week
    assert p["forecast"][0]["day"] == iso_day(FIRST + 28) and len(p["forecast"]) == 7


def test_days_without_figures_are_days_without_sales() -> None:
    values = [0.0 if i % 7 == 6 else 70.0 for i in range(35)]
    closed_sundays = frozenset(i for i in range(35) if i % 7 == 6)
    with_gaps = forecast_panel(days(values, skip=closed_sundays), today=iso_day(FIRST + 35))
    assert with_gaps == forecast_panel(days(values), today=iso_day(FIRST + 35))
    assert round(with_gaps["forecast"][6]["revenue"]) == 0  # the next Sunday


def test_the_current_day_is_forecast_not_learned_and_empty_input_is_empty() -> None:
    values = [50.0] * 21
    p = forecast_panel(days([*values, 5.0]), today=iso_day(FIRST + 21))  # day 21: in progress
    assert p["forecast"][0]["day"] == iso_day(FIRST + 21)
    assert round(p["forecast"][0]["revenue"]) == 50
    assert forecast_panel([], today="2024-01-01")["forecast"] == []


def alerts(group: str, returned: int, not_returned: int, pending: int) -> list[dict[str, Any]]:
    done = [{"group": group, "resolved": True, "returned": True, "revenue": 30.0}] * returned
    done += [{"group": group, "resolved": True, "returned": False, "revenue": 0.0}] * not_returned
    return done + [{"group": group, "resolved": False, "returned": False, "revenue": 0.0}] * pending


def test_uplift_compares_resolved_alerts_with_newcombe_and_wilson_intervals() -> None:
    u = uplift_panel(alerts("treatment", 56, 14, 5) + alerts("holdout", 48, 32, 2))
    d, lo, hi = newcombe(56, 70, 48, 80)
    assert (u["uplift"], u["ci_low"], u["ci_high"]) == (round(d, 4), round(lo, 4), round(hi, 4))
    assert u["treatment"]["n"] == 70 and u["treatment"]["pending"] == 5
    assert u["holdout"]["rate"] == 0.6
    assert (u["holdout"]["rate_low"], u["holdout"]["rate_high"]) == tuple(
        round(v, 4) for v in wilson(48, 80)
    )
    assert u["treatment"]["revenue_per_customer"] == 24.0
    assert u["revenue_ci_low"] <= u["revenue_uplift"] <= u["revenue_ci_high"]


def test_uplift_without_a_holdout_says_nothing() -> None:
    u = uplift_panel(alerts("treatment", 3, 1, 0))
    assert u["uplift"] is None and u["holdout"]["n"] == 0 and u["holdout"]["rate"] is None
    assert u["revenue_uplift"] is None


def test_outcomes_bring_the_coupons_cost_and_the_segment() -> None:
    """An alert with its published outcome: resolved by it, its discount cost counted, the
    net revenue per customer is revenue minus that cost, and it is known by segment."""
    from streams.domain.business import with_outcome

    rows = [{**a, "alert_id": f"a{i}"}
            for i, a in enumerate(alerts("treatment", 4, 4, 0) + alerts("holdout", 4, 4, 0))]
    out = {}
    for i, a in enumerate(rows):  # every returned treatment customer used a coupon worth 5
        coupon = a["group"] == "treatment" and a["returned"]
        out[a["alert_id"]] = {"returned": a["returned"], "revenue": a["revenue"],
                              "discount_cost": 5.0 if coupon else 0.0, "redeemed": coupon,
                              "segment": "loyal" if i % 2 else "at_risk"}  # fmt: skip
    merged = [with_outcome(a, out[a["alert_id"]]) for a in rows]
    u = uplift_panel(merged)
    t = u["treatment"]
    assert t["discount_per_customer"] == 2.5 and t["redeemed"] == 4
    assert t["net_revenue_per_customer"] == t["revenue_per_customer"] - 2.5
    assert u["net_revenue_uplift"] == round(u["revenue_uplift"] - 2.5, 2)
    assert {m["segment"] for m in merged} == {"loyal", "at_risk"}
    pending = with_outcome({**rows[0], "resolved": False}, None)
    assert (pending["resolved"], pending["discount"], pending["segment"]) == (False, 0.0, "")
