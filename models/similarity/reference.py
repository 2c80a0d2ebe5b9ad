"""Pure-Python reference of the similarity math that ``similarity.lua`` runs in Redis.

The Lua script is the implementation; these functions state the same formulas in Python so
they can be unit-tested and compared with the script (tests/integration).

>>> growth(30 * 86_400_000, 0, 30 * 86_400_000)   # one half-life later, weights are 2x
2.0
>>> decayed(stored=4.0, now_factor=2.0)            # a count of 4 one half-life ago is 2 now
2.0
>>> fwd, bwd = pair_increments(["b", "a"], "c", g=1.5**0.5)   # session: a then b, new click c
>>> {a: round(v, 9) for a, v in fwd.items()}, {a: round(v, 9) for a, v in bwd.items()}
({'b': 1.0, 'a': 0.5}, {'b': 0.5, 'a': 0.25})
>>> session_update(["b", "a"], "a", keep=10)       # a re-click moves the item to the front
(['a', 'b'], [])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Row = dict[str, float]
#: item -> {session: event time of its latest click on the item} (the ``is:<item>`` sets).
Index = dict[str, dict[str, int]]


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
    prev: Sequence[str], item: str, *, g: float, window: int = 10, forward: float = 1.0,
    forward_decay: float = 1.0, backward: float = 0.5, backward_decay: float = 1.0,
    norm: float = 0.5, gaps: Sequence[float | None] = (), time_decay_ms: float = 0.0,
) -> tuple[Row, Row]:
    """Increments of a new click ``item`` against the session's earlier items ``prev``
    (the stored list, most recent first): ``fwd[a]`` adds to sim(a, item), ``bwd[a]`` to
    sim(item, a).

    Distance d = 1 for the previous item; a re-click pairs an item with itself (forward
    only). Every increment is scaled by ``1 / H**norm``, ``H = sum_d forward /
    d**forward_decay`` over the paired distances (``pair_norm``): a click paired with many
    earlier items spreads less weight per pair. With ``time_decay_ms > 0`` the pair with
    ``prev[d-1]`` is also scaled by ``exp(-gaps[d-1] / time_decay_ms)`` (``pair_time_decay``:
    ``gaps[d-1]`` is the time from that item's latest click to this one; None or a missing
    entry = unknown, no scaling; a negative gap counts as 0).

    >>> pair_increments(["a", "x", "a"], "a", g=2.0, window=2, norm=0.0)
    ({'a': 2.0, 'x': 1.0}, {'x': 0.5})
    >>> pair_increments(["a", "x", "a"], "a", g=1.5, window=2, norm=1.0)   # H = 1 + 1/2
    ({'a': 1.0, 'x': 0.5}, {'x': 0.25})
    >>> fwd, _ = pair_increments(["b", "a"], "c", g=1.0, norm=0.0, gaps=[0, 300_000],
    ...                          time_decay_ms=300_000)   # a was clicked 5 minutes ago
    >>> fwd["b"], round(fwd["a"], 6) == round(0.5 * math.exp(-1), 6)
    (1.0, True)
    """
    fwd: Row = {}
    bwd: Row = {}
    paired = prev[:window]
    h = sum(forward / d**forward_decay for d in range(1, len(paired) + 1))
    if norm > 0 and h > 0:
        g = g / h**norm
    for d, a in enumerate(paired, 1):
        gd = g
        gap = gaps[d - 1] if d <= len(gaps) else None
        if time_decay_ms > 0 and gap is not None:
            gd = g * math.exp(-max(gap, 0.0) / time_decay_ms)
        fwd[a] = fwd.get(a, 0.0) + forward / d**forward_decay * gd
        if a != item and backward > 0:
            bwd[a] = bwd.get(a, 0.0) + backward / d**backward_decay * gd
    return fwd, bwd


def session_update(
    prev: Sequence[str], item: str, *, keep: int, dedup: bool = True
) -> tuple[list[str], list[str]]:
    """The stored session list after a click, and the items that left it.

    The list holds the last ``keep`` items, most recent first; with ``dedup`` they are
    distinct (a re-click moves its item to the front).

    >>> session_update(["c", "b", "a"], "d", keep=3)
    (['d', 'c', 'b'], ['a'])
    >>> session_update(["a", "b"], "a", keep=3, dedup=False)
    (['a', 'a', 'b'], [])
    """
    items = [x for x in prev if not (dedup and x == item)]
    items.insert(0, item)
    gone = [x for x in items[keep:] if x not in items[:keep]]
    return items[:keep], gone


def index_click(
    index: Index, session: str, item: str, ts: int, gone: Sequence[str], *, keep: int
) -> None:
    """Update the item -> recent sessions index for a click (``is:<item>`` sets).

    A session is listed under an item only while the item is in its stored list (``gone``:
    the items that left it). A set that grows past ``keep + max(1, keep // 10)`` members is
    trimmed to its ``keep`` most recent (by event time, then session id).

    >>> ix: Index = {}
    >>> index_click(ix, "s1", "a", 5, [], keep=50); index_click(ix, "s1", "b", 6, ["a"], keep=50)
    >>> ix
    {'a': {}, 'b': {'s1': 6}}
    """
    for x in gone:
        index.get(x, {}).pop(session, None)
    sessions = index.setdefault(item, {})
    new = session not in sessions
    sessions[session] = ts
    if new and len(sessions) > keep + max(1, keep // 10):
        ranked = sorted(sessions.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        index[item] = dict(ranked[:keep])


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


def heaviest(row: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    """The ``n`` heaviest entries (ties: the larger id first, as ``ZRANGE ... REV``)."""
    return sorted(row.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:n]


def neighbourhood(
    query: Sequence[str], index: Mapping[str, Mapping[str, int]],
    lists: Mapping[str, Sequence[str]], now: int, *, self: str, items: int = 2,
    sessions: int = 25, keep: int = 10,
    position_decay: float = 4.0, recency_ms: float = 5 * 86_400_000, item_decay: float = 4.0,
    item_window: int = 2, neighbours: int = 50, min_neighbours: int = 10,
) -> Row | None:
    """Session-neighbourhood scores kn(c) of the query session (most recent first), or None
    when fewer than ``min_neighbours`` sessions match.

    Candidates: the ``sessions`` most recent sessions listed under each of the ``items``
    most recent query items, ``self`` excluded; ``t_n`` is the latest time among those
    listings and ``lists[n]`` the session's stored list (a session without one is skipped).
    With ``w(q_p) = exp(-(p-1)/position_decay)`` over the first ``keep`` query items:
    ``sim(q, n) = sum_{i in q & n} w(i) / (|w| * sqrt(|n|)) * exp(-(now - t_n)/recency_ms)``;
    the ``neighbours`` most similar sessions (ties: smaller id) then give
    ``kn(c) = sum_n sim(q, n) * exp(-|pos_n(c) - pos_n(i*)|/item_decay)`` for items c within
    ``item_window`` positions of ``i*``, the most recent item of n that is in q.

    >>> ix = {"a": {"n1": 9}}
    >>> neighbourhood(["a"], ix, {"n1": ["b", "a"]}, 9, self="q", min_neighbours=1,
    ...               item_decay=1.0)["b"] == math.exp(-1) / math.sqrt(2)
    True
    """
    w: Row = {}
    for p, a in enumerate(query[:keep], 1):
        w.setdefault(a, math.exp(-(p - 1) / position_decay))
    norm = math.sqrt(sum(x * x for x in w.values()))
    latest: dict[str, int] = {}
    for a in query[: min(items, keep)]:
        listed = sorted(index.get(a, {}).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        for s, t in listed[:sessions]:
            if s != self and t > latest.get(s, -math.inf):
                latest[s] = t
    sims: list[tuple[str, float, list[str]]] = []
    for s, t in latest.items():
        distinct = list(dict.fromkeys(lists.get(s, ())))
        dot = sum(w.get(i, 0.0) for i in distinct)
        if dot > 0:
            sims.append((s, dot / (norm * math.sqrt(len(distinct)))
                         * math.exp(-(now - t) / recency_ms), list(lists[s])))
    if len(sims) < min_neighbours:
        return None
    sims.sort(key=lambda x: (-x[1], x[0]))
    kn: Row = {}
    for _, sim, lst in sims[:neighbours]:
        star = next(q for q, it in enumerate(lst) if it in w)
        seen: set[str] = set()
        for q, c in enumerate(lst):
            d = abs(q - star)
            if d <= item_window and c not in seen:
                seen.add(c)
                kn[c] = kn.get(c, 0.0) + sim * math.exp(-d / item_decay)
    return kn


def score(
    session: Sequence[str], rows: Mapping[str, Row], counts: Mapping[str, float], *,
    score_items: int = 3, recency_decay: float = 2.0, alpha: float = 0.5, beta: float = 0.2,
    repeat_boost: float = 1.0, neighbours: int = 20, two_hop: float = 0.3,
    two_hop_neighbours: int = 3, two_hop_row: int = 10, older_boost: float = 0.1,
    knn: Mapping[str, float] | None = None, knn_weight: float = 0.0,
) -> Row:
    """Candidate scores for a session (its stored list, most recent first); rows and counts
    already decayed; ``knn`` the :func:`neighbourhood` scores (None = no signal).

    With ``r_p = 1 / p**recency_decay`` over the ``score_items`` most recent items a_p and
    only the ``neighbours`` heaviest entries of each row:

    * ``ii(c) = sum_p r_p * sim(a_p, c) / cnt(a_p)**alpha``
      ``+ two_hop * sum_b (sim(a_1, b) / T) * sim(b, c) / (cnt(a_1)**alpha * cnt(b)**alpha)``
      over the ``two_hop_neighbours`` heaviest b != a_1 of a_1's row (T: their total weight),
      c among the ``two_hop_row`` heaviest of b's row;
    * ``score(c) = ii(c) / cnt(c)**beta``;
    * with ``knn``: items c not in the session also get ``knn_weight * S_ii / S_kn * kn(c)``
      (S_ii, S_kn: the sums of both signals over non-session items);
    * session items get ``repeat_boost * r_p`` (the scored ones) or
      ``repeat_boost * older_boost`` (the older ones).

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
        for c, v in heaviest(rows.get(a, {}), neighbours):
            acc[c] = acc.get(c, 0.0) + r * v / counts[a] ** alpha
    first = session[0] if session else ""
    if two_hop > 0 and first in counts:
        hop = [(b, v) for b, v in heaviest(rows.get(first, {}), neighbours) if b != first]
        hop = hop[:two_hop_neighbours]
        total = sum(v for _, v in hop)
        for b, vb in hop:
            if b not in counts:
                continue
            f = two_hop * (vb / total) / (counts[first] ** alpha * counts[b] ** alpha)
            for c, v in heaviest(rows.get(b, {}), neighbours)[:two_hop_row]:
                acc[c] = acc.get(c, 0.0) + v * f
    for c in acc:
        if c in counts:
            acc[c] /= counts[c] ** beta
    if knn and knn_weight > 0:
        inside = set(session)
        s_ii = sum(v for c, v in acc.items() if c not in inside)
        s_kn = sum(v for c, v in knn.items() if c not in inside)
        if s_ii > 0 and s_kn > 0:
            for c, v in knn.items():
                if c not in inside:
                    acc[c] = acc.get(c, 0.0) + knn_weight * s_ii / s_kn * v
    for a, r in weights.items():
        acc[a] = acc.get(a, 0.0) + repeat_boost * r
    for a in session[score_items:]:
        if a not in weights and older_boost > 0:
            acc[a] = acc.get(a, 0.0) + repeat_boost * older_boost
    return acc


def top_k(scores: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """Best ``k`` by score, ties by item id (the script's order).

    >>> top_k({"a": 1.0, "b": 2.0, "c": 1.0}, 2)
    [('b', 2.0), ('a', 1.0)]
    """
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
