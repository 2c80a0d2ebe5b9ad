"""One contract over every model wrapper (River's ``check_estimator`` habit): input not
mutated, state survives a round trip through plain JSON (``to_dict``/``from_dict``, no
pickle: what checkpoints and hand-overs store), unseen and missing features are handled, the
same seed gives the same results."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from models.alive import summary
from models.anomaly import AnomalyDetector
from models.bundle import Models
from models.churn import ChurnModel
from models.guarded import GuardedChurn
from models.hst import HalfSpaceTrees
from models.segments import SegmentModel
from streams.core.settings import Settings
from streams.worker.configs import anomaly_config, churn_scorers, model_factory, segment_config

DAY, T0 = 86_400_000, 1_704_067_200_000


@dataclass
class Wrapper:
    """How to teach one wrapper an example and read what it says."""

    make: Callable[[], Any]
    learn: Callable[[Any, int], None]
    predict: Callable[[Any, int], Any]
    #: the model from its ``to_dict()`` (with the application's configs where it takes them)
    restore: Callable[[dict[str, Any]], Any]


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
        restore=ChurnModel.from_dict,
    )


def buyer(i: int) -> Any:
    """The purchase summary of customer ``i % 25`` at ``i`` days."""
    c = customer(i)
    return summary(T0, c.last_purchase_ms, c.n_orders, T0 + (i + 40) * DAY)


def guarded_learn(g: GuardedChurn, i: int) -> None:
    c = customer(i)
    g.observe(c.user_id, T0, c.last_purchase_ms, c.n_orders)
    g.tick(T0 + (i + 40) * DAY)
    g.learn(example(i), buyer(i), i % 40 > 20, T0 + (i + 40) * DAY)


def bundle_learn(m: Models, i: int) -> None:
    guarded_learn(m.churn, i)
    m.segments.update(customer(i), T0 + (i + 30) * DAY)
    m.anomalies.observe(interaction(i))
    m.seen("shop.events", 0, i, T0 + i * 7_000)


def bundle_predict(m: Models, i: int) -> Any:
    return (m.churn.score(example(i), buyer(i)),
            m.segments.segment(customer(i), T0 + (i + 60) * DAY),
            m.anomalies.is_bot(f"u{i % 25}"))  # fmt: skip


SEGMENTS, ANOMALIES = segment_config(Settings()), anomaly_config(Settings())


def observe_four(m: AnomalyDetector, i: int) -> None:
    """Four events per step: the trees get past their first window (250) in 300 steps."""
    for k in range(4):
        m.observe(interaction(4 * i + k))


def anomaly_inputs(i: int) -> dict[str, float]:
    """Scaled features as the detector hands its trees."""
    return {"rate": (i % 9) / 9, "no_dwell": (i % 4) / 4, "distinct": (i % 13) / 13,
            "value": 0.9 if i % 10 == 0 else 0.05, "price_dev": (i % 3) / 6}  # fmt: skip


def hst_inputs(i: int) -> dict[str, float]:
    return {"a": (i * 37 % 100) / 100, "b": (i * 11 % 7) / 7, "c": 0.9 if i % 50 == 0 else 0.1}


WRAPPERS = {
    "churn-logistic": churn("logistic"),
    "guarded-churn": Wrapper(
        make=lambda: churn_scorers(Settings(churn_min_labels=50, churn_min_customers=5)),
        learn=guarded_learn,
        predict=lambda g, i: g.score(example(i), buyer(i)),
        restore=GuardedChurn.from_dict,
    ),
    "segments": Wrapper(
        make=lambda: SegmentModel(SEGMENTS),
        learn=lambda m, i: m.update(customer(i), T0 + (i + 30) * DAY),
        predict=lambda m, i: m.segment(customer(i), T0 + (i + 60) * DAY),
        restore=lambda d: SegmentModel.from_dict(d, SEGMENTS),
    ),
    "anomalies": Wrapper(
        make=lambda: AnomalyDetector(ANOMALIES),
        learn=observe_four,
        predict=lambda m, i: (m.is_bot(f"u{i % 25}"), m.hst.score_one(anomaly_inputs(i))),
        restore=lambda d: AnomalyDetector.from_dict(d, ANOMALIES),
    ),
    "half-space-trees": Wrapper(
        make=lambda: HalfSpaceTrees(n_trees=5, height=4, window_size=40, seed=3),
        learn=lambda m, i: m.learn_one(hst_inputs(i)),
        predict=lambda m, i: m.score_one(hst_inputs(i)),
        restore=HalfSpaceTrees.from_dict,
    ),
    "bundle": Wrapper(
        make=model_factory(Settings(churn_min_labels=50, churn_min_customers=5)),
        learn=bundle_learn,
        predict=bundle_predict,
        restore=lambda d: Models.from_dict(d, SEGMENTS, ANOMALIES),
    ),
}


def json_copy(w: Wrapper, m: Any) -> Any:
    """``m`` rebuilt from its state serialised to JSON bytes and back (as stored)."""
    return w.restore(orjson.loads(orjson.dumps(m.to_dict())))


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
    elif name == "anomalies":
        m.observe(e)
    else:
        w.learn(m, 7)
        w.predict(m, 7)
    assert (x, vars(c), vars(e)) == before


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_json_state_round_trips_and_learning_goes_on_identically(name: str) -> None:
    w = WRAPPERS[name]
    a = trained(w)
    b = json_copy(w, a)
    assert b.to_dict() == a.to_dict()  # the same state
    assert [w.predict(a, i) for i in range(40)] == [w.predict(b, i) for i in range(40)]
    for i in range(300, 400):
        w.learn(a, i)
        w.learn(b, i)
    assert [w.predict(a, i) for i in range(40)] == [w.predict(b, i) for i in range(40)]
    assert b.to_dict() == a.to_dict()


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_fresh_models_json_state_round_trips(name: str) -> None:
    w = WRAPPERS[name]
    a = w.make()
    b = json_copy(w, a)
    assert b.to_dict() == a.to_dict()
    for i in range(60):
        w.learn(a, i)
        w.learn(b, i)
    assert [w.predict(a, i) for i in range(40)] == [w.predict(b, i) for i in range(40)]


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_same_seed_same_results(name: str) -> None:
    w = WRAPPERS[name]
    a, b = trained(w), trained(w)
    assert [w.predict(a, i) for i in range(40)] == [w.predict(b, i) for i in range(40)]


@pytest.mark.parametrize("kind", ["logistic"])
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
