"""Session-kNN baselines VSKNN and V-STAN, learned click by click (``evaluate recs``).

Our own implementation of the published algorithms, run in the evaluation's streaming
protocol: every learned click extends its session at once, so a session prefix is a neighbour
candidate for every later click; the query session is never its own neighbour; IDF counts are
updated online.

Notation: the query session ``s = (s_1 .. s_L)`` (repeats kept, ``s_L`` the current click),
``p_s(i)`` the latest 1-based position of item ``i`` in s, ``S`` its distinct items; a
neighbour session ``n`` with distinct items ``N``, ``p_n(i)`` the latest position of ``i`` in n
and ``t_n`` the time of its latest click; ``t`` the current click's time;
``idf(i) = log(#sessions / #clicks(i))``.

**V-STAN** (Ludewig, Latifi & Jannach 2021, "Empirical analysis of session-based
recommendation algorithms", UMUAI 31; STAN of Garg et al., SIGIR 2019, with VSKNN's
position weights and IDF):

* query item weights ``w(i) = exp((p_s(i) - L) / lambda_spw)``;
* ``sim(s, n) = sum_{i in S & N} w(i) / (sqrt(sum_{i in S} w(i)^2) * sqrt(|N|))`` (cosine) or
  ``sum_{i in S & N} w(i) / |S|`` (``vec``), times ``exp(-(t - t_n) / lambda_snh)``;
* neighbours: the ``k`` most similar of the ``sample_size`` most recent sessions sharing an
  item with s;
* ``score(i) = sum_{n, i in N} sim(s, n) * exp(-|p_n(i) - p_n(i*)| / lambda_inh)
  * exp((p* - L) / lambda_ipw) * (1 + lambda_idf * idf(i))``, ``i*`` the item of n in s that n
  clicked last, ``p*`` the latest position in s of an item of N.

**VSKNN** (Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms",
UMUAI 28): ``sim(s, n) = sum_{i in S & N} v(p_s(i)) / |S|`` with the position weight ``v``
(``div``: p/L, ``quadratic``: (p/L)^2, ``log``, ``linear``, ``same``); ``score(i) =
sum_{n, i in N} sim(s, n) * m(L - p* + 1) * (1 + idf_weighting * idf(i))`` with the match
weight ``m`` (``div``: 1/x, ``quadratic``: 1/x^2, ``log``, ``same``).

Both keep the session's own items as candidates and do not fill short lists. Ties (sample
recency, similarity, score) go to the larger id: runs are deterministic.

>>> knn = SessionKnn(PRESETS["vsknn"])
>>> for s, i, t in [("a", "x", 1), ("a", "y", 2), ("b", "x", 3), ("b", "z", 4)]:
...     knn.learn(s, i, t)
>>> knn.rank("q", "x", 5, 3)
['x', 'z', 'y']
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

_DAY_MS = 86_400_000
Weighting = Literal["div", "quadratic", "log", "linear", "same"]


@dataclass(frozen=True, slots=True)
class SknnParams:
    """Parameters of V-STAN (``method="vstan"``; a ``lambda_*`` of None switches its factor
    off) or VSKNN (``method="vsknn"``)."""

    method: Literal["vstan", "vsknn"]
    k: int
    sample_size: int
    similarity: Literal["cosine", "vec"] = "cosine"
    lambda_spw: float | None = None
    lambda_snh_days: float | None = None
    lambda_inh: float | None = None
    lambda_ipw: float | None = None
    lambda_idf: float | None = None
    weighting: Weighting = "div"
    weighting_score: Weighting = "div"
    idf_weighting: float = 0.0


#: The two published V-STAN parameter sets for YOOCHOOSE (issue 19) and a VSKNN setting.
#: "mrr" has lambda_ipw "~0": 0.01 (a value like 1e-5 underflows exp() to 0 and drops every
#: neighbour that lacks the current item).
PRESETS: dict[str, SknnParams] = {
    "vstan-hr": SknnParams("vstan", 2000, 2500, "vec", lambda_spw=8, lambda_snh_days=10,
                           lambda_inh=8, lambda_ipw=0.5, lambda_idf=2),
    "vstan-mrr": SknnParams("vstan", 1000, 5000, "cosine", lambda_spw=4, lambda_snh_days=5,
                            lambda_inh=4, lambda_ipw=0.01, lambda_idf=1),
    "vsknn": SknnParams("vsknn", 100, 1000, weighting="quadratic", weighting_score="div",
                        idf_weighting=1.0),
}  # fmt: skip


def _position_weight(kind: Weighting, p: int, length: int) -> float:
    if kind == "div":
        return p / length
    if kind == "quadratic":
        return (p / length) ** 2
    if kind == "log":
        return 1 / math.log10(length - p + 1.7)
    if kind == "linear":
        return max(0.0, 1 - 0.1 * (length - p))
    return 1.0


def _match_weight(kind: Weighting, step: int) -> float:
    if kind == "div":
        return 1 / step
    if kind == "quadratic":
        return 1 / (step * step)
    if kind == "log":
        return 1 / math.log10(step + 1.7)
    return 1.0


def _larger(kv: tuple[str, float]) -> tuple[float, str]:
    return kv[1], kv[0]


class SessionIndex:
    """Sessions so far: item lists, latest click times, item -> sessions in recency order."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.last: dict[str, int] = {}
        self.by_item: dict[str, dict[str, None]] = {}
        self.clicks: Counter[str] = Counter()
        self._positions: dict[str, dict[str, int]] = {}

    def learn(self, session: str, item: str, ts: int) -> None:
        self.items.setdefault(session, []).append(item)
        members = self.sets.setdefault(session, set())
        members.add(item)
        self.last[session] = ts
        self._positions.pop(session, None)
        for i in members:  # the session becomes the most recent one of each of its items
            sessions = self.by_item.setdefault(i, {})
            sessions.pop(session, None)
            sessions[session] = None
        self.clicks[item] += 1

    def positions(self, session: str) -> dict[str, int]:
        """Item -> latest 1-based position in the session (cached until it changes)."""
        pos = self._positions.get(session)
        if pos is None:
            pos = {it: j for j, it in enumerate(self.items[session], 1)}
            self._positions[session] = pos
        return pos

    def idf(self, item: str) -> float:
        n = self.clicks[item]
        return math.log(len(self.items) / n) if n else 0.0

    def sample(self, query: set[str], exclude: str, size: int) -> set[str]:
        """The ``size`` most recent sessions sharing an item with ``query``."""
        union: set[str] = set()
        for i in query:
            union.update(self.by_item.get(i, ()))
        union.discard(exclude)
        if len(union) > size:
            last = self.last
            union = set(heapq.nlargest(size, union, key=lambda n: (last[n], n)))
        return union


class SessionKnn:
    """VSKNN / V-STAN over a :class:`SessionIndex` (the evaluation's baseline protocol)."""

    def __init__(self, params: SknnParams) -> None:
        self.p = params
        self.index = SessionIndex()

    def learn(self, session: str, item: str, ts: int) -> None:
        self.index.learn(session, item, ts)

    def rank(self, session: str, item: str, ts: int, k: int) -> list[str]:
        """Top ``k`` for ``session`` whose latest click (not learned yet) is ``item``."""
        seq = [*self.index.items.get(session, ()), item]
        if self.p.method == "vstan":
            scores = self._vstan(seq, session, ts)
        else:
            scores = self._vsknn(seq, session)
        return [i for i, v in heapq.nlargest(k, scores.items(), key=_larger) if v > 0]

    def _overlap(self, weights: dict[str, float], cands: set[str]) -> dict[str, float]:
        dot: dict[str, float] = {}
        for it, wi in weights.items():
            for n in self.index.by_item.get(it, ()):
                if n in cands:
                    dot[n] = dot.get(n, 0.0) + wi
        return dot

    def _vstan(self, seq: list[str], session: str, ts: int) -> dict[str, float]:
        p, ix = self.p, self.index
        length = len(seq)
        pos_s = {it: j for j, it in enumerate(seq, 1)}
        spw = p.lambda_spw
        w = {it: math.exp((j - length) / spw) if spw else 1.0 for it, j in pos_s.items()}
        dot = self._overlap(w, ix.sample(set(pos_s), session, p.sample_size))
        if p.similarity == "vec":
            sims = {n: v / len(w) for n, v in dot.items()}
        else:
            norm = math.sqrt(sum(x * x for x in w.values()))
            sims = {n: v / (norm * math.sqrt(len(ix.sets[n]))) for n, v in dot.items()}
        if p.lambda_snh_days:
            lam = p.lambda_snh_days * _DAY_MS
            sims = {n: v * math.exp(-(ts - ix.last[n]) / lam) for n, v in sims.items()}
        scores: dict[str, float] = {}
        idf: dict[str, float] = {}  # per call: item -> 1 + lambda_idf * idf
        inh: dict[int, float] = {}  # distance -> exp(-d / lambda_inh)
        for n, sim in heapq.nlargest(p.k, sims.items(), key=_larger):
            pos_n = ix.positions(n)
            matched = pos_s.keys() & pos_n.keys()
            if p.lambda_ipw is not None:
                sim *= math.exp((max(pos_s[i] for i in matched) - length) / p.lambda_ipw)
                if sim == 0.0:
                    continue
            star = max(pos_n[i] for i in matched)
            for it, pn in pos_n.items():
                v = sim
                if p.lambda_inh:
                    d = abs(pn - star)
                    if d not in inh:
                        inh[d] = math.exp(-d / p.lambda_inh)
                    v *= inh[d]
                if p.lambda_idf:
                    if it not in idf:
                        idf[it] = 1 + p.lambda_idf * ix.idf(it)
                    v *= idf[it]
                scores[it] = scores.get(it, 0.0) + v
        return scores

    def _vsknn(self, seq: list[str], session: str) -> dict[str, float]:
        p, ix = self.p, self.index
        length = len(seq)
        pos_s = {it: j for j, it in enumerate(seq, 1)}
        v = {it: _position_weight(p.weighting, j, length) for it, j in pos_s.items()}
        dot = self._overlap(v, ix.sample(set(pos_s), session, p.sample_size))
        sims = [(n, x / len(v)) for n, x in dot.items() if x > 0]
        scores: dict[str, float] = {}
        idf: dict[str, float] = {}
        for n, sim in heapq.nlargest(p.k, sims, key=_larger):
            members = ix.sets[n]
            last_match = max(pos_s[i] for i in pos_s.keys() & members)
            sim *= _match_weight(p.weighting_score, length - last_match + 1)
            for it in members:
                x = sim
                if p.idf_weighting:
                    if it not in idf:
                        idf[it] = 1 + p.idf_weighting * ix.idf(it)
                    x *= idf[it]
                scores[it] = scores.get(it, 0.0) + x
        return scores
