"""Uplift of a treatment over a randomised holdout, with honest intervals (pure functions).

* :func:`wilson` -- the Wilson score interval of one proportion (good at small counts and
  at 0 or n successes, where the normal interval collapses).
* :func:`newcombe` -- the difference of two independent proportions ``p1 - p2`` with
  Newcombe's hybrid score interval (method 10 of Newcombe 1998, built from the two Wilson
  intervals): the return rate of the treated minus the holdout's.
* :func:`bootstrap_diff` -- a difference of means (revenue per customer) with a seeded
  percentile bootstrap interval, each group resampled on its own.

A group of size 0 gives no estimate (``nan``) and the widest interval.

>>> lo, hi = wilson(0, 10)
>>> (lo, round(hi, 4))
(0.0, 0.2775)
>>> d, lo, hi = newcombe(56, 70, 48, 80)           # Newcombe's example: 0.2 [0.0524, 0.3339]
>>> round(d, 4), round(lo, 4), round(hi, 4)
(0.2, 0.0524, 0.3339)
>>> d, lo, hi = bootstrap_diff([3.0, 5.0, 4.0, 6.0], [1.0, 2.0, 1.5], seed=1)
>>> d, lo <= d <= hi
(3.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials; ``(0, 1)`` when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"successes {k} not in [0, {n}]")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``(p1 - p2, low, high)``: difference of two proportions with Newcombe's hybrid score
    interval. Without a group: ``(nan, -1, 1)``."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, -1.0, 1.0
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def bootstrap_diff(
    a: Sequence[float], b: Sequence[float], *, seed: int = 0, resamples: int = 2000,
    level: float = 0.95,
) -> tuple[float, float, float]:  # fmt: skip
    """``(mean(a) - mean(b), low, high)`` with a percentile bootstrap interval (``a`` and
    ``b`` resampled separately, ``resamples`` times, from ``numpy``'s generator seeded with
    ``seed``). The interval always contains the estimate. Without a group: ``(nan, -inf,
    inf)``."""
    if not a or not b:
        return math.nan, -math.inf, math.inf
    if resamples < 1 or not 0 < level < 1:
        raise ValueError("resamples >= 1 and 0 < level < 1 are required")
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    est = float(xa.mean() - xb.mean())
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        diffs[i] = xa[rng.integers(0, len(xa), len(xa))].mean() - xb[
            rng.integers(0, len(xb), len(xb))
        ].mean()
    tail = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(diffs, [tail, 1 - tail]))
    return est, min(low, est), max(high, est)
