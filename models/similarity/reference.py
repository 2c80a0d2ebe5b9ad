"""Pure-Python reference of the similarity math that ``lua/similarity.lua`` runs in Redis.

The Lua script is the implementation; these functions state the same formulas in Python so
they can be unit-tested and compared with the script (tests/integration).

>>> growth(30 * 86_400_000, 0, 30 * 86_400_000)   # one half-life later, weights are 2x
2.0
>>> decayed(stored=4.0, now_factor=2.0)            # a count of 4 one half-life ago is 2 now
2.0
>>> fwd, bwd = pair_increments(["b", "a"], "c", g=1.0)   # session: a then b, new click c
>>> fwd, bwd
({'b': 1.0, 'a': 0.5}, {'b': 0.5, 'a': 0.25})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Row = dict[str, float]


def growth(ts_ms: int, t0_ms: int, half_life_ms: float) -> float:
    """Weight factor of an event at ``ts_ms``: ``2**((ts - t0) / half_life)``.

    Counts are stored multiplied by the growth factor of their event; dividing by the factor
    of "now" decays all of them at once, without rescanning keys.
    """
    return float(2.0 ** ((ts_ms - t0_ms) / half_life_ms))


def decayed(stored: float, now_factor: float) -> float:
    """A stored (growth-weighted) count, decayed to now."""
    return stored / now_factor


def pair_increments(
    prev: Sequence[str], item: str, *, g: float, window: int = 5, forward: float = 1.0,
    forward_decay: float = 1.0, backward: float = 0.5, backward_decay: float = 1.0,
) -> tuple[Row, Row]:
    """Increments of a new click ``item`` against the session's earlier items ``prev``
    (most recent first): ``fwd[a]`` adds to sim(a, item), ``bwd[a]`` to sim(item, a).

    Distance d = 1 for the previous click; repeat clicks pair an item with itself (forward
    only).

    >>> pair_increments(["a", "x", "a"], "a", g=2.0, window=2)
    ({'a': 2.0, 'x': 1.0}, {'x': 0.5})
    """
    fwd: Row = {}
    bwd: Row = {}
    for d, a in enumerate(prev[:window], 1):
        fwd[a] = fwd.get(a, 0.0) + forward / d**forward_decay * g
        if a != item and backward > 0:
            bwd[a] = bwd.get(a, 0.0) + backward / d**backward_decay * g
    return fwd, bwd


def prune(row: Mapping[str, float], max_neighbours: int, slack: int) -> Row:
    """Keep the ``max_neighbours`` heaviest once a row exceeds ``max_neighbours + slack``.

    >>> prune({"a": 3.0, "b": 1.0, "c": 2.0}, 1, 1)
    {'a': 3.0}
    >>> prune({"a": 3.0, "b": 1.0}, 1, 1)
    {'a': 3.0, 'b': 1.0}
    """
    if len(row) <= max_neighbours + slack:
        return dict(row)
    ranked = sorted(row.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    return dict(ranked[:max_neighbours])


def score(
    session: Sequence[str], rows: Mapping[str, Row], counts: Mapping[str, float], *,
    score_items: int = 3, recency_decay: float = 2.0, alpha: float = 0.5, beta: float = 0.2,
    repeat_boost: float = 1.0, neighbours: int = 20,
) -> Row:
    """Candidate scores for a session (most recent item first); counts already decayed.

    ``score(c) = sum_p r_p * sim(a_p, c) / (cnt(a_p)**alpha * cnt(c)**beta)
    + repeat_boost * sum_{p: a_p = c} r_p`` with ``r_p = 1 / p**recency_decay`` over the
    ``score_items`` most recent items and the ``neighbours`` heaviest entries of each row.

    >>> s = score(["a"], {"a": {"b": 4.0}}, {"a": 4.0, "b": 1.0})
    >>> s["b"], s["a"]
    (2.0, 1.0)
    """
    weights: Row = {}
    for p, a in enumerate(session[:score_items], 1):
        weights[a] = weights.get(a, 0.0) + 1.0 / p**recency_decay
    acc: Row = {}
    for a, r in weights.items():
        if a not in counts:
            continue
        top = sorted(rows.get(a, {}).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        for c, v in top[:neighbours]:
            acc[c] = acc.get(c, 0.0) + r * v / counts[a] ** alpha
    for c in acc:
        acc[c] /= counts[c] ** beta
    for a, r in weights.items():
        acc[a] = acc.get(a, 0.0) + repeat_boost * r
    return acc


def top_k(scores: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """Best ``k`` by score, ties by item id (the script's order).

    >>> top_k({"a": 1.0, "b": 2.0, "c": 1.0}, 2)
    [('b', 2.0), ('a', 1.0)]
    """
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
