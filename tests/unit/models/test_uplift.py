"""Uplift intervals: known values, they contain the estimate, degenerate and empty groups."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.uplift import bootstrap_diff, newcombe, wilson


def test_wilson_and_newcombe_match_published_values() -> None:
    """Newcombe (1998), table II: 56/70 vs 48/80 -> 0.2000 [0.0524, 0.3339]; Wilson 0/10
    -> [0, 0.2775]; 10/10 -> [0.7225, 1]."""
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    d, lo, hi = newcombe(56, 70, 48, 80)
    assert (d, lo, hi) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)
    d, lo, hi = newcombe(9, 10, 3, 10)  # Newcombe's 9/10 vs 3/10: 0.6 [0.1705, 0.8090]
    assert (lo, hi) == pytest.approx((0.1705, 0.8090), abs=1e-4)


counts = st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(max_examples=300)
@given(a=counts, b=counts)
def test_newcombe_interval_contains_the_estimate_and_stays_in_range(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    d, lo, hi = newcombe(a[0], a[1], b[0], b[1])
    if a[1] == 0 or b[1] == 0:  # an empty group: no estimate, the widest interval
        assert math.isnan(d) and (lo, hi) == (-1.0, 1.0)
    else:
        assert -1.0 <= lo <= d <= hi <= 1.0
        assert hi - lo > 0  # even 0/n vs 0/m (degenerate counts) is uncertain


@settings(max_examples=300)
@given(k=st.integers(0, 500), extra=st.integers(0, 500))
def test_wilson_contains_the_proportion(k: int, extra: int) -> None:
    n = k + extra
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= (k / n if n else 0.5) <= hi <= 1.0
    if n:
        with pytest.raises(ValueError):
            wilson(n + 1, n)


values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=30)


@settings(max_examples=100, deadline=None)
@given(a=values, b=values, seed=st.integers(0, 2**32 - 1))
def test_bootstrap_contains_the_estimate_and_is_seeded(
    a: list[float], b: list[float], seed: int
) -> None:
    d, lo, hi = bootstrap_diff(a, b, seed=seed, resamples=200)
    if not a or not b:
        assert math.isnan(d) and (lo, hi) == (-math.inf, math.inf)
        return
    assert lo <= d <= hi
    assert d == pytest.approx(sum(a) / len(a) - sum(b) / len(b), abs=1e-6)
    assert bootstrap_diff(a, b, seed=seed, resamples=200) == (d, lo, hi)


def test_bootstrap_of_constant_groups_is_a_point() -> None:
    assert bootstrap_diff([5.0] * 4, [2.0] * 3, seed=0) == (3.0, 3.0, 3.0)


def test_bootstrap_covers_a_known_difference_most_of_the_time() -> None:
    """Samples with a true difference of 1: the 95% interval covers it in ~95% of draws."""
    import random

    rng = random.Random(0)
    hits = 0
    for s in range(100):
        a = [rng.gauss(1.0, 2.0) for _ in range(60)]
        b = [rng.gauss(0.0, 2.0) for _ in range(40)]
        _, lo, hi = bootstrap_diff(a, b, seed=s, resamples=500)
        hits += lo <= 1.0 <= hi
    assert 88 <= hits <= 100
