"""Small streaming statistics with plain-JSON state (no pickle): P² quantiles and a scaler.

:class:`P2Quantile` is the P² algorithm of Jain & Chlamtac (1985): five markers track one
quantile in O(1) memory and time per observation. :class:`RunningScaler` standardises
features with Welford means and variances. Both round-trip through ``to_dict``/``from_dict``.

>>> q = P2Quantile(0.5)
>>> for x in range(1, 1002):
...     q.update(float(x))
>>> round(q.value())
501
>>> P2Quantile.from_dict(q.to_dict()).value() == q.value()
True
>>> s = RunningScaler()
>>> for v in (1.0, 3.0):
...     s.learn_one({"a": v})
>>> s.transform_one({"a": 3.0})
{'a': 1.0}
"""

from __future__ import annotations

import math
from typing import Any


class P2Quantile:
    """Streaming estimate of the ``p``-quantile (P² algorithm); exact below 5 observations."""

    __slots__ = ("dn", "n", "np", "p", "q")

    def __init__(self, p: float) -> None:
        if not 0.0 < p < 1.0:
            raise ValueError("p must be in (0, 1)")
        self.p = p
        self.q: list[float] = []  # marker heights (the first observations, sorted, until 5)
        self.n: list[float] = [0.0, 1.0, 2.0, 3.0, 4.0]  # marker positions
        self.np: list[float] = [0.0, 2 * p, 4 * p, 2 + 2 * p, 4.0]  # desired positions
        self.dn: list[float] = [0.0, p / 2, p, (1 + p) / 2, 1.0]

    @property
    def count(self) -> int:
        return len(self.q) if len(self.q) < 5 else int(self.n[4]) + 1

    def update(self, x: float) -> None:
        q, n = self.q, self.n
        if len(q) < 5:
            q.append(x)
            q.sort()
            return
        if x < q[0]:
            q[0], k = x, 0
        elif x >= q[4]:
            q[4], k = x, 3
        else:
            k = next(i for i in range(4) if q[i] <= x < q[i + 1])
        for i in range(k + 1, 5):
            n[i] += 1
        for i in range(5):
            self.np[i] += self.dn[i]
        for i in (1, 2, 3):
            d = self.np[i] - n[i]
            if (d >= 1 and n[i + 1] - n[i] > 1) or (d <= -1 and n[i - 1] - n[i] < -1):
                s = 1 if d > 0 else -1
                qp = q[i] + s / (n[i + 1] - n[i - 1]) * (
                    (n[i] - n[i - 1] + s) * (q[i + 1] - q[i]) / (n[i + 1] - n[i])
                    + (n[i + 1] - n[i] - s) * (q[i] - q[i - 1]) / (n[i] - n[i - 1])
                )
                if not q[i - 1] < qp < q[i + 1]:  # parabolic step overshoots: go linear
                    qp = q[i] + s * (q[i + s] - q[i]) / (n[i + s] - n[i])
                q[i] = qp
                n[i] += s

    def value(self, default: float = math.nan) -> float:
        """The current estimate (``default`` before any observation)."""
        if not self.q:
            return default
        if len(self.q) < 5:
            return self.q[min(int(self.p * len(self.q)), len(self.q) - 1)]
        return self.q[2]

    def to_dict(self) -> dict[str, Any]:
        return {"p": self.p, "q": list(self.q), "n": list(self.n), "np": list(self.np)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> P2Quantile:
        s = cls(float(d["p"]))
        s.q, s.n, s.np = (
            [float(v) for v in d["q"]],
            [float(v) for v in d["n"]],
            [float(v) for v in d["np"]],
        )
        return s


class RunningScaler:
    """Standardise each feature to zero mean and unit variance (Welford, online)."""

    __slots__ = ("stats",)

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # name -> [count, mean, m2]

    def learn_one(self, x: dict[str, float]) -> None:
        for k, v in x.items():
            st = self.stats.setdefault(k, [0.0, 0.0, 0.0])
            st[0] += 1
            delta = v - st[1]
            st[1] += delta / st[0]
            st[2] += delta * (v - st[1])

    def transform_one(self, x: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in x.items():
            c, mean, m2 = self.stats.get(k, (0.0, 0.0, 0.0))
            std = math.sqrt(m2 / c) if c > 1 else 0.0
            out[k] = (v - mean) / std if std > 1e-12 else 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"stats": {k: list(v) for k, v in self.stats.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunningScaler:
        s = cls()
        s.stats = {k: [float(x) for x in v] for k, v in d["stats"].items()}
        return s
