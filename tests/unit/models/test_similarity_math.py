"""Decay, pruning and scoring math of the similarity store (models/similarity/reference.py)."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import InvalidConfig
from models.similarity import RecConfig, key_base
from models.similarity.reference import decayed, growth, pair_increments, prune, score, top_k

DAY = 86_400_000


def test_growth_doubles_every_half_life() -> None:
    hl = 30 * DAY
    assert growth(0, 0, hl) == 1.0
    assert growth(hl, 0, hl) == pytest.approx(2.0)
    assert growth(3 * hl, 0, hl) == pytest.approx(8.0)


@given(st.integers(0, 3_000), st.integers(0, 3_000), st.floats(5, 100))
def test_decay_is_relative_to_now_only(t1_days: int, t2_days: int, hl_days: float) -> None:
    # a count added at t1 and read at t2 >= t1 is worth 2**-((t2-t1)/hl), whatever t0 is
    # (within the documented range: < 1000 half-lives after the landmark t0)
    t1, t2 = min(t1_days, t2_days) * DAY, max(t1_days, t2_days) * DAY
    hl = hl_days * DAY
    for t0 in (0, t1):
        value = decayed(growth(t1, t0, hl), growth(t2, t0, hl))
        assert math.isclose(value, 2 ** (-(t2 - t1) / hl), rel_tol=1e-9)


def test_pairs_closer_and_forward_are_stronger() -> None:
    fwd, bwd = pair_increments(["c", "b", "a"], "x", g=1.0)
    assert fwd["c"] > fwd["b"] > fwd["a"]
    assert all(fwd[i] > bwd[i] for i in fwd)


def test_pairs_count_repeat_clicks_forward_only() -> None:
    fwd, bwd = pair_increments(["x"], "x", g=1.0)
    assert fwd == {"x": 1.0}
    assert bwd == {}


def test_pairs_respect_window() -> None:
    fwd, _ = pair_increments(list("abcdefg"), "x", g=1.0, window=3)
    assert set(fwd) == {"a", "b", "c"}


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.floats(0.01, 100), max_size=60),
       st.integers(1, 20), st.integers(1, 5))
def test_prune_bounds_row_and_keeps_heaviest(row: dict[str, float], m: int, slack: int) -> None:
    kept = prune(row, m, slack)
    assert len(kept) <= m + slack
    if len(row) > m + slack:
        assert len(kept) == m
        assert min(kept.values()) >= max(v for k, v in row.items() if k not in kept)


def test_score_recent_items_weigh_more() -> None:
    rows = {"a": {"x": 1.0}, "b": {"y": 1.0}}
    counts = {"a": 1.0, "b": 1.0, "x": 1.0, "y": 1.0}
    s = score(["a", "b"], rows, counts)  # a is the most recent
    assert s["x"] == pytest.approx(4 * s["y"])  # recency 1/p**2


def test_score_damps_popular_candidates() -> None:
    rows = {"a": {"pop": 10.0, "niche": 10.0}}
    s = score(["a"], rows, {"a": 10.0, "pop": 1000.0, "niche": 10.0})
    assert s["niche"] > s["pop"]


def test_score_boosts_session_items() -> None:
    s = score(["a", "b"], {}, {"a": 1.0, "b": 1.0}, repeat_boost=1.0)
    assert s == {"a": 1.0, "b": 0.25}


def test_score_reads_only_top_neighbours() -> None:
    rows = {"a": {f"n{i}": float(i) for i in range(50)}}
    counts = {"a": 1.0} | {f"n{i}": 1.0 for i in range(50)}
    s = score(["a"], rows, counts, neighbours=5, repeat_boost=0.0)
    assert set(s) == {"a", "n45", "n46", "n47", "n48", "n49"}


def test_top_k_orders_by_score_then_id() -> None:
    assert top_k({"b": 1.0, "a": 1.0, "c": 5.0}, 3) == [("c", 5.0), ("a", 1.0), ("b", 1.0)]


def test_config_validation_and_the_script_argument() -> None:
    config = RecConfig(session_window=5, half_life_days=30.0, max_neighbours=200)
    args = orjson.loads(config.as_json())
    assert len(args) == 19 and args["half_life_ms"] == 30 * 86_400_000
    assert args["weights"] == {"view": 1.0, "add_to_cart": 2.0, "purchase": 3.0}
    with pytest.raises(InvalidConfig):
        RecConfig(session_window=5, half_life_days=30.0, max_neighbours=0)
    with pytest.raises(InvalidConfig):
        RecConfig(session_window=5, half_life_days=0, max_neighbours=200)


@pytest.mark.parametrize("prefix", ["", "a{b", "x*", "p]"])
def test_key_base_rejects_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidConfig):
        key_base(prefix)
