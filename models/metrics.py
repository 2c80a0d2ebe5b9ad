"""Progressive quality of a probabilistic scorer on delayed labels: bounded, plain JSON.

A :class:`ScoreTally` keeps, for each class, the weight of the scores that fell in each of
``bins`` cells of a logit grid over [-10, 10] (a histogram: ROC AUC from it counts pairs in
the same cell as ties), the Brier and log-loss sums and the confusion counts at one
threshold. Memory is fixed whatever the number of labels, every update is O(1), and
:meth:`ScoreTally.scale` multiplies everything at once (what exponential forgetting needs).

>>> t = ScoreTally(threshold=0.5)
>>> for p, y in [(0.9, True), (0.8, False), (0.3, True), (0.1, False)]:
...     t.add(p, y)
>>> t.auc(), t.precision(), t.recall(), round(t.brier(), 4)
(0.75, 0.5, 0.5, 0.2875)
>>> ScoreTally.from_dict(t.to_dict()).to_dict() == t.to_dict()
True
"""

from __future__ import annotations

import math
from typing import Any, Final

LO: Final = -10.0
HI: Final = 10.0
BINS: Final = 400
#: P clipped into [EPS, 1 - EPS] for the log loss.
EPS: Final = 1e-6


def logit_bin(p: float, bins: int = BINS) -> int:
    """The histogram cell of probability ``p``.

    >>> logit_bin(0.5), logit_bin(0.0), logit_bin(1.0)
    (200, 0, 399)
    """
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    z = min(max(math.log(p / (1.0 - p)), LO), HI - 1e-9)
    return int((z - LO) / (HI - LO) * bins)


class ScoreTally:
    """Weighted histograms of a scorer's probabilities per class, and loss sums."""

    __slots__ = ("bins", "brier_sum", "fn", "fp", "hist", "logloss_sum", "threshold", "tp")

    def __init__(self, threshold: float = 0.5, bins: int = BINS) -> None:
        self.threshold, self.bins = float(threshold), int(bins)
        self.hist: tuple[dict[int, float], dict[int, float]] = ({}, {})  # [negatives, positives]
        self.brier_sum = self.logloss_sum = 0.0
        self.tp = self.fp = self.fn = 0.0

    def add(self, p: float, y: bool, w: float = 1.0) -> None:
        """One label ``y`` that the scorer had given probability ``p`` (finite, in [0, 1])."""
        h = self.hist[1 if y else 0]
        b = logit_bin(p, self.bins)
        h[b] = h.get(b, 0.0) + w
        self.brier_sum += w * ((p - (1.0 if y else 0.0)) ** 2)
        self.logloss_sum -= w * math.log(min(max(p if y else 1.0 - p, EPS), 1.0))
        if p >= self.threshold:
            if y:
                self.tp += w
            else:
                self.fp += w
        elif y:
            self.fn += w

    def scale(self, f: float) -> None:
        """Multiply every weight by ``f`` (forgetting)."""
        for h in self.hist:
            for k in h:
                h[k] *= f
        self.brier_sum *= f
        self.logloss_sum *= f
        self.tp, self.fp, self.fn = self.tp * f, self.fp * f, self.fn * f

    @property
    def n_pos(self) -> float:
        return sum(self.hist[1].values())

    @property
    def n_neg(self) -> float:
        return sum(self.hist[0].values())

    def auc(self) -> float:
        """ROC AUC (pairs within a cell count half); NaN until both classes are seen."""
        neg, pos = self.hist
        wp, wn = sum(pos.values()), sum(neg.values())
        if wp <= 0 or wn <= 0:
            return math.nan
        acc = below = 0.0
        for b in sorted(neg.keys() | pos.keys()):
            n_b = neg.get(b, 0.0)
            acc += pos.get(b, 0.0) * (below + 0.5 * n_b)
            below += n_b
        return acc / (wp * wn)

    def _mean(self, total: float) -> float:
        n = self.n_pos + self.n_neg
        return total / n if n > 0 else math.nan

    def brier(self) -> float:
        return self._mean(self.brier_sum)

    def log_loss(self) -> float:
        return self._mean(self.logloss_sum)

    def precision(self) -> float:
        """Of the labels scored at or above the threshold, the share that churned."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp > 0 else math.nan

    def recall(self) -> float:
        """Of the labels that churned, the share scored at or above the threshold."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn > 0 else math.nan

    def summary(self) -> dict[str, float]:
        return {
            "auc": self.auc(), "log_loss": self.log_loss(), "brier": self.brier(),
            "precision": self.precision(), "recall": self.recall(),
            "n": self.n_pos + self.n_neg, "n_positive": self.n_pos,
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold, "bins": self.bins,
            "neg": {str(k): v for k, v in sorted(self.hist[0].items())},
            "pos": {str(k): v for k, v in sorted(self.hist[1].items())},
            "sums": [self.brier_sum, self.logloss_sum, self.tp, self.fp, self.fn],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreTally:
        t = cls(float(d["threshold"]), int(d["bins"]))
        t.hist = (
            {int(k): float(v) for k, v in d["neg"].items()},
            {int(k): float(v) for k, v in d["pos"].items()},
        )
        t.brier_sum, t.logloss_sum, t.tp, t.fp, t.fn = (float(v) for v in d["sums"])
        return t


def auc_se(auc: float, n_pos: float, n_neg: float) -> float:
    """Hanley & McNeil (1982) standard error of an ROC AUC (effective counts).

    >>> round(auc_se(0.8, 100, 100), 4)
    0.0314
    """
    if not (n_pos > 1 and n_neg > 1) or math.isnan(auc):
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    v = auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
    return math.sqrt(max(v, 0.0) / (n_pos * n_neg))
