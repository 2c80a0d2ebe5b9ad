"""The online models of one source partition, and the set of them a worker holds.

One :class:`Models` bundle (churn model, segment model, anomaly detector) per source
partition, held in a :class:`ModelSet`: like the profiles and churn tracks, a model learns
only from its own partition's events, in that partition's order. Kafka orders records
within a partition, never across partitions, so this is what makes alerts, segments and
anomalies the same however the partitions are spread over workers or interleaved in
batches (one model for all partitions would learn in whatever order batches happened to
arrive). The price is less data per model: ``shopstream evaluate churn --partitions N``
measures it (docs/churn.md).

The worker checkpoints the set (``streams.worker.checkpoints``) and moves a partition's
bundle with the partition at a rebalance (``streams.worker.handover``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from models.anomaly import AnomalyDetector
from models.churn import ChurnModel
from models.segments import SegmentModel


@dataclass(slots=True)
class Models:
    churn: ChurnModel
    segments: SegmentModel
    anomalies: AnomalyDetector
    #: "topic:partition" -> last source offset whose event these models include.
    offsets: dict[str, int] = field(default_factory=dict)
    stream_time_ms: int = 0

    def seen(self, topic: str, partition: int, offset: int, ts_ms: int) -> None:
        key = f"{topic}:{partition}"
        if offset > self.offsets.get(key, -1):
            self.offsets[key] = offset
        self.stream_time_ms = max(self.stream_time_ms, ts_ms)


@dataclass(slots=True)
class ModelSet:
    """One :class:`Models` bundle per source partition (created on first use).

    >>> ms = ModelSet()
    >>> fresh = lambda: Models(churn=None, segments=None, anomalies=None)  # any factory
    >>> ms.get(2, fresh) is ms.get(2, fresh), sorted(ms.parts)
    (True, [2])
    """

    parts: dict[int, Models] = field(default_factory=dict)

    def get(self, partition: int, fresh: Callable[[], Models]) -> Models:
        """The partition's bundle, made by ``fresh`` on first use."""
        models = self.parts.get(partition)
        if models is None:
            models = self.parts[partition] = fresh()
        return models

    def forget(self, user_id: str) -> int:
        """Drop what every bundle remembers of one user (erasure); returns how many
        memories were dropped."""
        return sum(
            m.segments.forget(user_id) + m.anomalies.forget(user_id) for m in self.parts.values()
        )

    @property
    def stream_time_ms(self) -> int:
        return max((m.stream_time_ms for m in self.parts.values()), default=0)

    @property
    def offsets(self) -> dict[str, int]:
        return {k: v for m in self.parts.values() for k, v in sorted(m.offsets.items())}

    @property
    def labels_learned(self) -> int:
        return sum(m.churn.n_learned for m in self.parts.values())

    def churn_metrics(self) -> dict[str, float]:
        """Progressive churn metrics of all partitions' models: quality weighted by labels."""
        each = [(m.churn.n_learned, m.churn.metrics) for m in self.parts.values()]
        each = [(n, metrics) for n, metrics in each if n > 1]  # ROCAUC.get() costs ~0.1 ms
        total = sum(n for n, _ in each)
        out = {
            k: sum(metrics[k] * n for n, metrics in each) / total if total else math.nan
            for k in ("auc", "log_loss")
        }
        out["n_learned"] = float(self.labels_learned)
        out["n_positive"] = float(sum(m.churn.n_positive for m in self.parts.values()))
        return out

    def segment_sizes(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for m in self.parts.values():
            total.update(m.segments.segment_sizes())
        return dict(sorted(total.items()))
