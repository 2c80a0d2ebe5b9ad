"""Baselines and protocol helpers of the recommendation evaluation (no Redis needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from streams.core.errors import StateUnavailable
from streams.core.settings import Settings
from streams.tools.baselines import (
    AssociationRules,
    Popular,
    baseline_names,
    next_items,
    run_baseline,
)
from streams.tools.evaluate_recs import evaluate, load_split, paired_bootstrap
from streams.tools.sknn import PRESETS, SessionKnn, SknnParams
from streams.worker.configs import rec_config

DAY = 86_400_000


def test_next_items_follow_sessions_across_interleaving() -> None:
    clicks = [("a", "1", 1), ("b", "7", 2), ("a", "2", 3), ("b", "8", 4), ("a", "2", 5)]
    assert next_items(clicks) == ["2", "8", "2", "", ""]


def test_association_rules_count_all_ordered_pairs_with_repeats() -> None:
    ar = AssociationRules()
    for t, item in enumerate(["x", "y", "x", "z"]):
        ar.learn("s", item, t)
    assert ar.pairs["x"] == {"y": 1, "x": 1, "z": 2}
    assert ar.rank("s", "x", 9, 1) == ["z"]
    assert ar.rank("s", "unknown", 9, 5) == []


def test_popular_ranks_by_count() -> None:
    pop = Popular()
    for t, item in enumerate("abbccc"):
        pop.learn("s", item, t)
    assert pop.rank("s", "a", 9, 2) == ["c", "b"]


def test_baseline_predicts_then_learns() -> None:
    train = [("t", "a", 1), ("t", "b", 2)]
    test = [("s", "a", 3), ("s", "b", 4), ("s", "a", 5)]
    # a -> b is known from train: hit at rank 1; b -> a is unknown before it is learned
    result = run_baseline("ar", train, test, 5)
    assert (result["n"], result["hr"], result["mrr"], result["ranks"]) == (2, 0.5, 0.5, [1, 0])


def test_baseline_names_expand_and_reject() -> None:
    assert baseline_names(["vstan,vsknn", "ar"]) == ["vstan-hr", "vstan-mrr", "vsknn", "ar"]
    assert baseline_names(["all"]) == ["pop", "ar", "vstan-hr", "vstan-mrr", "vsknn"]
    with pytest.raises(ValueError, match="unknown baseline 'stan'"):
        baseline_names(["stan"])


def test_vstan_follows_the_published_formulas() -> None:
    p = SknnParams("vstan", k=10, sample_size=10, similarity="cosine", lambda_spw=2,
                   lambda_snh_days=1, lambda_inh=2, lambda_ipw=1, lambda_idf=1)
    knn = SessionKnn(p)
    for s, i, t in [("n1", "a", 0), ("n1", "b", 0), ("n2", "c", -DAY), ("n2", "a", -DAY)]:
        knn.learn(s, i, t)
    # query: (x, a) at t = 0. w(a) = 1, w(x) = exp(-1/2); both neighbours match only a.
    w_x = math.exp(-1 / 2)
    norm = math.sqrt(1 + w_x**2)
    sim1 = 1 / (norm * math.sqrt(2))                # n1 is as recent as the query
    sim2 = 1 / (norm * math.sqrt(2)) * math.exp(-1)  # n2 one lambda_snh older
    idf_b = 1 + math.log(2 / 1)                      # 2 sessions, b clicked once
    expected = {
        "b": sim1 * math.exp(-1 / 2) * idf_b,        # one step after the match a in n1
        "c": sim2 * math.exp(-1 / 2) * idf_b,        # one step before the match a in n2
        "a": (sim1 + sim2) * (1 + math.log(2 / 2)),  # the matched item itself
    }
    assert knn._vstan(["x", "a"], "q", 0) == pytest.approx(expected)
    assert knn.rank("q", "a", 0, 3) == ["a", "b", "c"]


def test_sknn_never_uses_the_query_session_and_learns_prefixes_at_once() -> None:
    for name in ("vstan-hr", "vstan-mrr", "vsknn"):
        knn = SessionKnn(PRESETS[name])
        knn.learn("q", "a", 0)
        knn.learn("q", "b", 1)
        assert knn.rank("q", "a", 2, 5) == []  # only its own session holds a
        assert knn.rank("new", "a", 2, 5)[0] in ("a", "b")  # q is another session's neighbour
        knn.learn("other", "a", 3)
        assert "c" not in knn.rank("new", "a", 4, 5)
        knn.learn("other", "c", 5)
        assert "c" in knn.rank("new", "a", 6, 5)  # the prefix (a, c) is a neighbour at once


def test_paired_bootstrap_is_centred_on_the_observed_difference() -> None:
    ours, theirs = [1, 2, 0, 1] * 50, [1, 0, 0, 2] * 50
    ci = paired_bootstrap(ours, theirs, resamples=500)
    assert ci["hr"][0] == pytest.approx(0.25) and ci["hr"][1] < 0.25 < ci["hr"][2]
    assert ci["mrr"][0] == pytest.approx((2.5 - 1.5) / 4)  # reciprocal ranks 1, .5, 0, 1
    assert paired_bootstrap(ours, ours, resamples=100)["mrr"] == [0.0, 0.0, 0.0]


def test_holdout_split_of_one_file(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    rows = [f"{s}\t{i}\t{s * 10 + j}" for s in range(10) for j, i in enumerate("ab")]
    f.write_text("SessionId\tItemId\tTime\n" + "\n".join(rows) + "\n")
    train, test, what = load_split(f, holdout=0.2)
    assert {c[0] for c in test} == {"8", "9"} and len(train) == 16
    assert "last 20% of sessions" in what
    with pytest.raises(ValueError, match="--holdout"):
        load_split(f)


def test_unreachable_redis_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable, match="make up"):
        evaluate([("1", "1", 1)], [("1", "2", 2)], k=5, baselines=[],
                 redis_url="redis://127.0.0.1:1/0", config=rec_config(Settings()))
