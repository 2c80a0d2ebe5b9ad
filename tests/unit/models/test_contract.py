"""One contract over every model wrapper (River's ``check_estimator`` habit): input not
mutated, state survives a round trip, unseen and missing features are handled, the same seed
gives the same results."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from models.anomaly import AnomalyDetector
from models.churn import ChurnModel
from models.segments import SegmentModel
from streams.core.settings import Settings
from streams.worker.configs import anomaly_config, segment_config

DAY, T0 = 86_400_000, 1_704_067_200_000


@dataclass
class Wrapper:
    """How to teach one wrapper an example and read what it says."""

    make: Callable[[], Any]
    learn: Callable[[Any, int], None]
    predict: Callable[[Any, int], Any]


def example(i: int) -> dict[str, float]:
    return {"recency_days": float(i % 40), "log_aov": 1.0 + (i % 3), "events_7d": i % 5 / 2}


def customer(i: int) -> SimpleNamespace:
    return SimpleNamespace(user_id=f"u{i % 25}", first_seen_ms=T0, last_purchase_ms=T0 + i * DAY,
                           n_orders=1 + i % 4, monetary=20.0 * (1 + i % 7), n_events=3 + i,
                           n_sessions=1 + i % 5, abandoned_carts=i % 2,
                           categories={"shoes": 1.0 + i % 3})  # fmt: skip


def interaction(i: int) -> SimpleNamespace:
    return SimpleNamespace(type="purchase" if i % 5 == 0 else "view", user_id=f"u{i % 25}",
                           session_id=f"s{i % 25}", ts_ms=T0 + i * 7_000, item_id=f"i{i % 30}",
                           category=None, price=10.0 + i % 9, quantity=1 + i % 2)  # fmt: skip


def churn(kind: Any) -> Wrapper:
    return Wrapper(
        make=lambda: ChurnModel(kind, seed=3),
        learn=lambda m, i: m.learn_one(example(i), i % 40 > 20),
        predict=lambda m, i: m.predict_proba_one(example(i)),
    )


WRAPPERS = {
    "churn-logistic": churn("logistic"),
    "churn-forest": churn("forest"),
    "segments": Wrapper(
        make=lambda: SegmentModel(segment_config(Settings())),
        learn=lambda m, i: m.update(customer(i), T0 + (i + 30) * DAY),
        predict=lambda m, i: m.segment(customer(i), T0 + (i + 60) * DAY),
    ),
    "anomalies": Wrapper(
        make=lambda: AnomalyDetector(anomaly_config(Settings())),
        learn=lambda m, i: m.observe(interaction(i)),
        predict=lambda m, i: (m.is_bot(f"u{i % 25}"), m.n_learned),
    ),
}


def trained(w: Wrapper, n: int = 300) -> Any:
    m = w.make()
    for i in range(n):
        w.learn(m, i)
    return m


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_input_is_not_mutated(name: str) -> None:
    w = WRAPPERS[name]
    m = trained(w, 50)
    x, c, e = example(7), customer(7), interaction(7)
    before = (copy.deepcopy(x), copy.deepcopy(vars(c)), copy.deepcopy(vars(e)))
    if name.startswith("churn"):
        m.learn_one(x, True)
        m.predict_proba_one(x)
        m.contributions(x)
    elif name == "segments":
        m.update(c, T0 + 90 * DAY)
    else:
        m.observe(e)
    assert (x, vars(c), vars(e)) == before


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_state_round_trips_and_learning_goes_on_identically(name: str) -> None:
    w = WRAPPERS[name]
    a = trained(w)
    b = pickle.loads(pickle.dumps(a))
    for i in range(300, 340):
        w.learn(a, i)
        w.learn(b, i)
    assert [w.predict(a, i) for i in range(40)] == [w.predict(b, i) for i in range(40)]


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_same_seed_same_results(name: str) -> None:
    w = WRAPPERS[name]
    a, b = trained(w), trained(w)
    assert [w.predict(a, i) for i in range(40)] == [w.predict(b, i) for i in range(40)]


@pytest.mark.parametrize("kind", ["logistic", "forest"])
def test_churn_model_handles_unseen_and_missing_features(kind: Any) -> None:
    m = trained(churn(kind))
    for x in ({}, {"recency_days": 3.0}, {"never_seen": 1.0, "log_aov": 2.0}):
        p = m.predict_proba_one(x)
        assert 0.0 <= p <= 1.0
        assert set(m.contributions(x)) <= set(x) | set(example(0))
    m.learn_one({"brand_new": 1.0}, True)  # a new feature is learned, not an error
    assert 0.0 <= m.predict_proba_one({"brand_new": 1.0}) <= 1.0


def test_segment_and_anomaly_models_accept_a_customer_with_no_history() -> None:
    fresh = SimpleNamespace(user_id="new", first_seen_ms=T0, last_purchase_ms=-1, n_orders=0,
                            monetary=0.0, n_events=0, n_sessions=0, abandoned_carts=0,
                            categories={})  # fmt: skip
    seg = SegmentModel(segment_config(Settings()))
    assert seg.update(fresh, T0).segment == "prospects"
    bare = SimpleNamespace(type="search", user_id="new", session_id="s", ts_ms=T0, item_id=None,
                           category=None, price=None, quantity=None)  # fmt: skip
    assert AnomalyDetector(anomaly_config(Settings())).observe(bare) == []
