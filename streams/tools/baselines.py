"""Baselines of ``evaluate recs``, run in memory under the store's protocol.

Protocol: learn TRAIN, then for each TEST click in time order, if its session has a next
click rank the top k given the session so far (current click included) and record the rank of
the true next item; then learn the click.

* ``pop``: most clicked items so far;
* ``ar``: association rules on the last item (all ordered pairs of a session, repeats
  included);
* ``vstan-hr``, ``vstan-mrr``, ``vsknn``: the session-kNN methods of :mod:`.sknn`.

>>> next_items([("s1", "a", 1), ("s2", "x", 2), ("s1", "b", 3)])
['b', '', '']
>>> ar = AssociationRules(); ar.learn("s", "a", 1); ar.learn("s", "b", 2); ar.learn("s", "a", 3)
>>> ar.rank("s", "a", 4, 5)
['b', 'a']
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from streams.tools.clicks import Click
from streams.tools.sknn import PRESETS, SessionKnn

#: Names accepted by ``--baseline`` (``vstan`` stands for both V-STAN parameter sets).
BASELINES = ("pop", "ar", *PRESETS)
ALIASES = {"vstan": ("vstan-hr", "vstan-mrr"), "all": BASELINES}


class Baseline(Protocol):
    def learn(self, session: str, item: str, ts: int) -> None: ...
    def rank(self, session: str, item: str, ts: int, k: int) -> list[str]: ...


def next_items(clicks: Sequence[Click]) -> list[str]:
    """For each click, the next item of its session ('' for the last click of a session)."""
    out = [""] * len(clicks)
    following: dict[str, str] = {}
    for j in range(len(clicks) - 1, -1, -1):
        session, item, _ = clicks[j]
        out[j] = following.get(session, "")
        following[session] = item
    return out


class Popular:
    """Most clicked items so far."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def learn(self, session: str, item: str, ts: int) -> None:
        self.counts[item] += 1

    def rank(self, session: str, item: str, ts: int, k: int) -> list[str]:
        return [i for i, _ in self.counts.most_common(k)]


class AssociationRules:
    """Association rules on the last item: counts of ordered pairs (a before b) in a session,
    repeat clicks included; rank by count (ties: first seen)."""

    def __init__(self) -> None:
        self.pairs: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.history: defaultdict[str, list[str]] = defaultdict(list)

    def learn(self, session: str, item: str, ts: int) -> None:
        hist = self.history[session]
        for a in hist:
            self.pairs[a][item] += 1
        hist.append(item)

    def rank(self, session: str, item: str, ts: int, k: int) -> list[str]:
        row = self.pairs.get(item)
        if not row:
            return []
        return [i for i, _ in heapq.nlargest(k, row.items(), key=lambda kv: kv[1])]


FACTORIES: dict[str, Callable[[], Baseline]] = {
    "pop": Popular,
    "ar": AssociationRules,
    **{name: partial(SessionKnn, params) for name, params in PRESETS.items()},
}


def baseline_names(raw: Sequence[str]) -> list[str]:
    """``--baseline`` values (repeated or comma-separated; ``vstan``, ``all``, ``none``) ->
    the baselines to run, in order, without duplicates.

    >>> baseline_names(["ar,vstan", "pop", "ar"])
    ['ar', 'vstan-hr', 'vstan-mrr', 'pop']
    >>> baseline_names(["none"])
    []
    """
    out: list[str] = []
    for value in raw:
        for name in filter(None, (v.strip() for v in value.split(","))):
            if name == "none":
                continue
            expanded = ALIASES.get(name, (name,))
            for n in expanded:
                if n not in FACTORIES:
                    choices = ", ".join([*BASELINES, *ALIASES, "none"])
                    raise ValueError(f"unknown baseline {n!r} (choose from {choices})")
                if n not in out:
                    out.append(n)
    return out


def run_baseline(
    name: str, train: Sequence[Click], test: Sequence[Click], k: int
) -> dict[str, Any]:
    """HR@k and MRR@k of a baseline under the predict-then-learn protocol; ``ranks`` holds
    the 1-based rank of each target (0 = not in the top k), in test order."""
    model = FACTORIES[name]()
    start = time.perf_counter()
    for session, item, ts in train:
        model.learn(session, item, ts)
    ranks: list[int] = []
    for (session, item, ts), target in zip(test, next_items(test), strict=True):
        if target:
            top = model.rank(session, item, ts, k)
            ranks.append(top.index(target) + 1 if target in top else 0)
        model.learn(session, item, ts)
    n = len(ranks)
    return {
        "name": name,
        "hr": sum(1 for r in ranks if r) / max(n, 1),
        "mrr": sum(1.0 / r for r in ranks if r) / max(n, 1),
        "n": n,
        "seconds": time.perf_counter() - start,
        "ranks": ranks,
    }
