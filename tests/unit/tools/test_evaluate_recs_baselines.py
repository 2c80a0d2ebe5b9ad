"""Baselines and protocol helpers of the recommendation evaluation (no Redis needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.errors import StateUnavailable
from streams.core.settings import Settings
from streams.tools.evaluate_recs import (
    AssociationRules,
    Popular,
    evaluate,
    next_items,
    run_baseline,
)
from streams.worker.configs import rec_config


def test_next_items_follow_sessions_across_interleaving() -> None:
    clicks = [("a", "1", 1), ("b", "7", 2), ("a", "2", 3), ("b", "8", 4), ("a", "2", 5)]
    assert next_items(clicks) == ["2", "8", "2", "", ""]


def test_association_rules_count_all_ordered_pairs_with_repeats() -> None:
    ar = AssociationRules()
    for item in ["x", "y", "x", "z"]:
        ar.learn("s", item)
    assert ar.pairs["x"] == {"y": 1, "x": 1, "z": 2}
    assert ar.rank("x", 1) == ["z"]
    assert ar.rank("unknown", 5) == []


def test_popular_ranks_by_count() -> None:
    pop = Popular()
    for item in "abbccc":
        pop.learn("s", item)
    assert pop.rank("a", 2) == ["c", "b"]


def test_baseline_predicts_then_learns() -> None:
    train = [("t", "a", 1), ("t", "b", 2)]
    test = [("s", "a", 3), ("s", "b", 4), ("s", "a", 5)]
    # a -> b is known from train: hit at rank 1; b -> a is unknown before it is learned
    result = run_baseline("ar", train, test, 5)
    assert result["n"] == 2
    assert result["hr"] == 0.5
    assert result["mrr"] == 0.5


def test_unreachable_redis_says_how_to_start_it(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("SessionId\tItemId\tTime\n1\t1\t1\n1\t2\t2\n")
    with pytest.raises(StateUnavailable, match="make up"):
        evaluate(f, f, k=5, baseline=None, redis_url="redis://127.0.0.1:1/0",
                 config=rec_config(Settings()))
