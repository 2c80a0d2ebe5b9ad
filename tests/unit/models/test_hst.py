"""Our Half-Space Trees are River's: same trees, same scores for the same seed and inputs
(on the anomaly detector's own features of generated traffic, and on inputs with missing
features), and the JSON state rebuilds them exactly."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from river import anomaly as river_anomaly

from models.anomaly import AnomalyDetector
from models.hst import HalfSpaceTrees
from streams.core.settings import Settings
from streams.worker.configs import anomaly_config

T0 = 1_704_067_200_000


def traffic(n: int, seed: int) -> list[SimpleNamespace]:
    """Shop-like events: browsing users, a few buyers with odd prices, a burst bot."""
    g = random.Random(seed)
    out, ts = [], T0
    for i in range(n):
        ts += g.randint(0, 4_000)
        bot = i % 7 == 0
        kind = "purchase" if g.random() < 0.1 else "view"
        out.append(SimpleNamespace(
            type=kind, user_id="bot" if bot else f"u{g.randint(0, 300)}", session_id="s",
            ts_ms=ts, item_id=f"i{g.randint(0, 80)}", category=None,
            price=round(g.lognormvariate(3, 1 if g.random() < 0.95 else 2.5), 2),
            quantity=g.choice([1, 1, 1, 2, 30]),
        ))  # fmt: skip
    return out


def detector_inputs(n: int, seed: int) -> list[dict[str, float]]:
    """What the detector hands its trees: its own features of generated traffic."""
    d = AnomalyDetector(anomaly_config(Settings()))
    xs: list[dict[str, float]] = []
    for e in traffic(n, seed):
        u = d._user(e.user_id)
        d._window(u, e)
        d._rules(u, e)
        xs.append(d._features(u, e))
    return xs


def sparse_inputs(n: int, seed: int) -> list[dict[str, float]]:
    g = random.Random(seed)
    names = ("rate", "no_dwell", "distinct", "value", "price_dev")
    xs = [dict.fromkeys(names, 0.5)]  # all features in the first one (the trees' features)
    xs += [{k: g.random() ** 3 for k in names if g.random() > 0.1} for _ in range(n)]
    return xs


@pytest.mark.parametrize(("inputs", "seed"), [(detector_inputs, 7), (detector_inputs, 3),
                                             (sparse_inputs, 7), (sparse_inputs, 11)])  # fmt: skip
def test_scores_are_rivers_for_the_same_seed(inputs: Any, seed: int) -> None:
    ours = HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=seed)
    theirs = river_anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=seed)
    xs = inputs(3_000, seed)
    scores = []
    for x in xs:
        scores.append((ours.score_one(x), theirs.score_one(x)))
        ours.learn_one(x)
        theirs.learn_one(x)
    assert [a for a, _ in scores] == [b for _, b in scores]
    assert len({round(a, 6) for a, _ in scores}) > 50  # the scores do vary: a real check
    for t, tree in enumerate(theirs.trees):  # the same trees, node by node (depth first)
        nodes = list(tree.iter_dfs())
        branches = [n for n in nodes if hasattr(n, "threshold")]
        assert sorted(n.threshold for n in branches) == sorted(ours.threshold[t])
        assert sorted(n.r_mass for n in nodes) == sorted(ours.r_mass[t])


def test_json_state_rebuilds_the_trees_exactly() -> None:
    a = HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=7)
    xs = sparse_inputs(1_000, 5)
    for x in xs[:620]:  # two windows and part of a third
        a.learn_one(x)
    b = HalfSpaceTrees.from_dict(orjson.loads(orjson.dumps(a.to_dict())))
    assert b.to_dict() == a.to_dict()
    for x in xs[620:]:
        assert a.score_one(x) == b.score_one(x)
        a.learn_one(x)
        b.learn_one(x)
    assert b.to_dict() == a.to_dict()


def test_an_untrained_state_rebuilds_from_the_seed() -> None:
    a, xs = HalfSpaceTrees(n_trees=3, height=4, window_size=20, seed=1), sparse_inputs(60, 2)
    b = HalfSpaceTrees.from_dict(a.to_dict())
    for x in xs:
        a.learn_one(x)
        b.learn_one(x)
    assert b.to_dict() == a.to_dict()


@pytest.mark.parametrize("change", [{"height": 10**9}, {"n_trees": -1}, {"v": 2},
                                    {"split": [[99] * 63] * 10}, {"l_mass": [[0]]}])  # fmt: skip
def test_a_state_of_another_shape_is_refused(change: dict[str, Any]) -> None:
    a = HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=7)
    for x in sparse_inputs(10, 1):
        a.learn_one(x)
    with pytest.raises(ValueError, match="half-space trees"):
        HalfSpaceTrees.from_dict({**a.to_dict(), **change})
