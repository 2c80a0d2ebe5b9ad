"""Decay, pruning and scoring math of the similarity store (models/similarity/reference.py)."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import InvalidConfig
from models.similarity import RecConfig, key_base
from models.similarity.reference import (
    Index,
    decayed,
    growth,
    index_click,
    neighbourhood,
    pair_increments,
    prune,
    score,
    session_update,
    top_k,
)

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


@given(st.integers(1, 12), st.sampled_from([0.0, 0.5, 1.0]))
def test_pair_norm_bounds_a_clicks_forward_mass(n: int, norm: float) -> None:
    prev = [f"i{j}" for j in range(n)]
    fwd, _ = pair_increments(prev, "x", g=1.0, window=10, norm=norm)
    h = sum(1.0 / d for d in range(1, min(n, 10) + 1))
    assert math.isclose(sum(fwd.values()), h ** (1.0 - norm), rel_tol=1e-12)
    # the first pair of a session is never scaled: H = 1
    assert pair_increments(prev[:1], "x", g=2.0, norm=norm)[0] == {"i0": 2.0}


@given(st.lists(st.integers(-5_000, 7_200_000), min_size=1, max_size=12))
def test_pairs_decay_with_the_time_since_each_items_click(gaps: list[int]) -> None:
    prev = [f"i{j}" for j in range(len(gaps))]
    plain, plain_b = pair_increments(prev, "x", g=1.0)
    fwd, bwd = pair_increments(prev, "x", g=1.0, gaps=gaps, time_decay_ms=300_000)
    for a, gap in zip(prev, gaps, strict=False):
        if a in fwd:  # within the window
            f = math.exp(-max(gap, 0) / 300_000)
            assert fwd[a] == pytest.approx(plain[a] * f) and bwd[a] == pytest.approx(plain_b[a] * f)
    # unknown times (a list stored without them) and 0 (off) leave the distance weights alone
    assert pair_increments(prev, "x", g=1.0, gaps=[None] * len(gaps), time_decay_ms=1.0)[0] == plain
    assert pair_increments(prev, "x", g=1.0, gaps=gaps, time_decay_ms=0.0)[0] == plain


def test_the_default_decays_pairs_over_five_minutes() -> None:
    base = {"session_window": 10, "half_life_days": 30.0, "max_neighbours": 200,
            "knn_weight": 0.0, "item_ttl_s": 0}  # fmt: skip
    assert RecConfig(**base).pair_time_decay_s == 300.0
    assert orjson.loads(RecConfig(**base).as_json())["pair_time_decay_ms"] == 300_000.0
    with pytest.raises(InvalidConfig):
        RecConfig(**base | {"pair_time_decay_s": -1})


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
    s = score(["a", "b"], rows, counts, two_hop=0.0)  # a is the most recent
    assert s["x"] == pytest.approx(4 * s["y"])  # recency 1/p**2


def test_score_damps_popular_candidates() -> None:
    rows = {"a": {"pop": 10.0, "niche": 10.0}}
    s = score(["a"], rows, {"a": 10.0, "pop": 1000.0, "niche": 10.0})
    assert s["niche"] > s["pop"]


def test_score_boosts_session_items_older_ones_flat() -> None:
    s = score(["a", "b", "c", "d", "e"], {}, dict.fromkeys("abcde", 1.0), repeat_boost=2.0)
    assert s == pytest.approx({"a": 2.0, "b": 0.5, "c": 2 / 9, "d": 0.2, "e": 0.2})
    assert "d" not in score(list("abcd"), {}, dict.fromkeys("abcd", 1.0), older_boost=0.0)


def test_two_hops_reach_items_never_paired_with_the_current_one() -> None:
    rows = {"a": {"b": 3.0, "x": 1.0}, "b": {"c": 2.0}, "x": {"y": 8.0}}
    counts = dict.fromkeys("abcxy", 1.0)
    s = score(["a"], rows, counts, two_hop=0.5, repeat_boost=0.0)
    # a's neighbours b (3/4 of its weight) and x (1/4) lead to c and y
    assert s["c"] == pytest.approx(0.5 * 0.75 * 2.0)
    assert s["y"] == pytest.approx(0.5 * 0.25 * 8.0)
    assert "c" not in score(["a"], rows, counts, two_hop=0.0)
    one = score(["a"], rows, counts, two_hop=0.5, two_hop_neighbours=1, repeat_boost=0.0)
    assert "y" not in one and one["c"] == pytest.approx(0.5 * 2.0)


def test_session_lists_are_distinct_and_bounded() -> None:
    items: list[str] = []
    for click in "abcabdc":
        items, _ = session_update(items, click, keep=3)
    assert items == ["c", "d", "b"]
    assert session_update(["c", "d", "b"], "e", keep=3) == (["e", "c", "d"], ["b"])
    assert session_update(["x", "x", "y"], "z", keep=2, dedup=False) == (["z", "x"], ["y"])


def test_index_lists_a_session_only_while_the_item_is_in_its_list() -> None:
    ix: Index = {}
    items: list[str] = []
    for ts, click in enumerate("abcd"):
        items, gone = session_update(items, click, keep=2)
        index_click(ix, "s", click, ts, gone, keep=50)
    assert {i for i, sessions in ix.items() if "s" in sessions} == set(items) == {"c", "d"}
    for n in range(60):  # bounded: trimmed to the 5 most recent past 5 + 1
        index_click(ix, f"n{n}", "z", n, [], keep=5)
        assert len(ix["z"]) <= 6
    assert set(ix["z"]) == {f"n{n}" for n in range(54, 60)}  # 6 after an odd count


def test_neighbourhood_prefers_recent_similar_sessions() -> None:
    day = 86_400_000
    ix = {"a": {"n1": 10 * day, "n2": 10 * day, "old": 0}}
    lists = {"n1": ["x", "a"], "n2": ["y", "z", "a"], "old": ["w", "a"]}
    kn = neighbourhood(["a"], ix, lists, 10 * day, self="q", min_neighbours=1)
    assert kn is not None
    assert kn["x"] > kn["y"] > kn["w"] > 0  # shorter session more similar; old decays
    assert "z" in kn and kn["a"] > kn["x"]
    assert neighbourhood(["a"], ix, lists, 10 * day, self="q", min_neighbours=4) is None
    assert neighbourhood(["a"], ix, lists, 10 * day, self="n1", min_neighbours=3) is None


def test_neighbourhood_redistributes_a_share_of_the_item_mass() -> None:
    rows = {"a": {"b": 1.0}}
    counts = {"a": 1.0, "b": 1.0}
    s = score(["a"], rows, counts, knn={"a": 9.0, "c": 1.0, "d": 3.0}, knn_weight=0.5,
              repeat_boost=0.0)
    assert s == pytest.approx({"b": 1.0, "c": 0.125, "d": 0.375, "a": 0.0})


def test_score_reads_only_top_neighbours() -> None:
    rows = {"a": {f"n{i}": float(i) for i in range(50)}}
    counts = {"a": 1.0} | {f"n{i}": 1.0 for i in range(50)}
    s = score(["a"], rows, counts, neighbours=5, repeat_boost=0.0)
    assert set(s) == {"a", "n45", "n46", "n47", "n48", "n49"}


def test_top_k_orders_by_score_then_id() -> None:
    assert top_k({"b": 1.0, "a": 1.0, "c": 5.0}, 3) == [("c", 5.0), ("a", 1.0), ("b", 1.0)]


def test_config_validation_and_the_script_argument() -> None:
    base = {"session_window": 5, "half_life_days": 30.0, "max_neighbours": 200,
            "knn_weight": 0.0, "item_ttl_s": 0}  # fmt: skip
    config = RecConfig(**base)
    args = orjson.loads(config.as_json())
    assert len(args) == 37 and args["half_life_ms"] == 30 * 86_400_000
    assert args["pair_norm"] == 0.5
    assert args["knn_recency_ms"] == 5 * 86_400_000 and args["dedup_sessions"] is True
    assert args["item_ttl_ms"] == 0  # no TTL when given 0 (the worker sets it from settings)
    assert args["weights"] == {"view": 1.0, "add_to_cart": 2.0, "purchase": 3.0}
    with pytest.raises(InvalidConfig):
        RecConfig(**base | {"max_neighbours": 0})
    with pytest.raises(InvalidConfig):
        RecConfig(**base | {"half_life_days": 0})
    with pytest.raises(InvalidConfig):
        RecConfig(**base | {"half_life_days": 1, "knn_weight": -1})
    with pytest.raises(InvalidConfig):
        RecConfig(**base | {"pair_norm": -0.5})


@pytest.mark.parametrize("prefix", ["", "a{b", "x*", "p]"])
def test_key_base_rejects_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidConfig):
        key_base(prefix)
