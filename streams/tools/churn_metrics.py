"""Metrics of a churn score against the truth, for ``evaluate churn``: exact ROC AUC, PR AUC
(average precision), Brier score, AUC per recency bucket, and precision/recall/F1 of a set
of alerts.

>>> roc_auc([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
0.75
>>> average_precision([0.9, 0.8, 0.3, 0.1], [True, False, True, False])
0.8333333333333333
>>> brier([1.0, 0.0], [True, True])
0.5
>>> prf({"a", "b"}, {"a", "c", "d"})
{'n': 2, 'precision': 0.5, 'recall': 0.3333333333333333, 'f1': 0.4}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

#: Recency buckets (days since the last purchase) of the per-bucket report.
BUCKETS: Final = ((0.0, 30.0), (30.0, 90.0), (90.0, 200.0), (200.0, math.inf))
#: A bucket counts for ``min_bucket_auc`` when it holds at least this share of customers.
MIN_SHARE: Final = 0.05


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Exact ROC AUC (Mann-Whitney, ties count half); NaN if a class is missing."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return math.nan
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        rank_sum += mid * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """PR AUC as average precision (tied scores are taken as one step)."""
    pos = sum(labels)
    if not pos:
        return math.nan
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    ap, tp, seen, i = 0.0, 0, 0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        hits = sum(labels[order[k]] for k in range(i, j + 1))
        tp, seen = tp + hits, seen + (j - i + 1)
        ap += hits * (tp / seen)
        i = j + 1
    return ap / pos  # divided once: all-positive data gives exactly 1.0


def brier(probs: Sequence[float], labels: Sequence[bool]) -> float:
    """Mean squared error of the probabilities (calibration and sharpness; lower is better)."""
    if not probs:
        return math.nan
    total = sum((p - (1.0 if y else 0.0)) ** 2 for p, y in zip(probs, labels, strict=True))
    return total / len(probs)


def prf(flagged: set[str], positives: set[str]) -> dict[str, Any]:
    """Precision, recall and F1 of the ``flagged`` users against the ``positives``."""
    tp = len(flagged & positives)
    precision = tp / len(flagged) if flagged else math.nan
    recall = tp / len(positives) if positives else math.nan
    f1 = 2 * tp / (len(flagged) + len(positives)) if flagged or positives else math.nan
    return {"n": len(flagged), "precision": precision, "recall": recall, "f1": f1}


def _label(lo: float, hi: float) -> str:
    return f"{lo:g}-" if math.isinf(hi) else f"{lo:g}-{hi:g}"


def by_bucket(
    recency: Sequence[float], labels: Sequence[bool], scores: dict[str, Sequence[float]]
) -> list[dict[str, Any]]:
    """Per recency bucket: customers, share, churn rate and each score's ROC AUC (buckets
    with nobody in them are left out)."""
    out = []
    n = len(recency)
    for lo, hi in BUCKETS:
        idx = [i for i, r in enumerate(recency) if lo <= r < hi]
        if not idx:
            continue
        ys = [labels[i] for i in idx]
        row: dict[str, Any] = {
            "days": _label(lo, hi), "n": len(idx), "share": len(idx) / n,
            "churn_rate": sum(ys) / len(ys),
        }  # fmt: skip
        for name, s in scores.items():
            row[f"{name}_auc"] = roc_auc([s[i] for i in idx], ys)
        out.append(row)
    return out


def min_bucket_auc(buckets: list[dict[str, Any]], key: str = "alert_auc") -> float:
    """The lowest ``key`` over buckets holding at least :data:`MIN_SHARE` of the customers
    (NaN AUCs, from one-class buckets, are skipped)."""
    vals = [b[key] for b in buckets if b["share"] >= MIN_SHARE and not math.isnan(b[key])]
    return min(vals) if vals else math.nan
