"""The online models of one source partition, and the set of them a worker holds.

One :class:`Models` bundle (churn scorers -- learned model, analytic scorer and their guard
--, segment model, anomaly detector) per source partition, held in a :class:`ModelSet`:
like the profiles and churn tracks, a model learns
only from its own partition's events, in that partition's order. Kafka orders records
within a partition, never across partitions, so this is what makes alerts, segments and
anomalies the same however the partitions are spread over workers or interleaved in
batches (one model for all partitions would learn in whatever order batches happened to
arrive). The price is less data per model: ``shopstream evaluate churn --partitions N``
measures it (docs/churn.md).

The worker checkpoints the set (``streams.worker.checkpoints``) and moves a partition's
bundle with the partition at a rebalance (``streams.worker.handover``), both as plain JSON
(:meth:`Models.to_dict`, rebuilt by :meth:`Models.from_dict` with the worker's configs).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from models.anomaly import AnomalyConfig, AnomalyDetector
from models.errors import CheckpointRejected
from models.guard import NAMES
from models.guarded import GuardedChurn
from models.segments import SegmentConfig, SegmentModel

log = logging.getLogger(__name__)
#: Bumped when the bundle's JSON layout changes.
STATE_VERSION: Final = 1


@dataclass(slots=True)
class Models:
    churn: GuardedChurn
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of the bundle (every model's ``to_dict``; no pickle)."""
        return {
            "v": STATE_VERSION, "churn": self.churn.to_dict(), "segments": self.segments.to_dict(),
            "anomalies": self.anomalies.to_dict(), "offsets": dict(self.offsets),
            "stream_time_ms": self.stream_time_ms,
        }  # fmt: skip

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], segments: SegmentConfig, anomalies: AnomalyConfig
    ) -> Models:
        """Inverse of :meth:`to_dict`, with the application's configs; a state it cannot
        rebuild raises :class:`CheckpointRejected` (never anything else)."""
        if not isinstance(d, dict) or d.get("v") != STATE_VERSION:
            raise CheckpointRejected(f"not a bundle state of version {STATE_VERSION}")
        try:
            offsets = {str(k): int(v) for k, v in d["offsets"].items()}
            return cls(
                churn=GuardedChurn.from_dict(d["churn"]),
                segments=SegmentModel.from_dict(d["segments"], segments),
                anomalies=AnomalyDetector.from_dict(d["anomalies"], anomalies),
                offsets=offsets, stream_time_ms=int(d["stream_time_ms"]),
            )  # fmt: skip
        except Exception as exc:  # whatever a malformed state breaks: one documented error
            raise CheckpointRejected(f"models state not rebuilt: {exc!r}") from exc


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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of every partition's bundle."""
        return {"v": STATE_VERSION, "parts": {str(p): m.to_dict() for p, m in self.parts.items()}}

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], segments: SegmentConfig, anomalies: AnomalyConfig
    ) -> ModelSet:
        """Inverse of :meth:`to_dict`; raises only :class:`CheckpointRejected`."""
        parts = d.get("parts")
        if d.get("v") != STATE_VERSION or not isinstance(parts, dict):
            raise CheckpointRejected(f"not a model set state (version {d.get('v')!r})")
        try:
            numbers = [int(p) for p in parts]
        except ValueError as exc:
            raise CheckpointRejected(f"model set state: {exc}") from exc
        return cls(parts={n: Models.from_dict(m, segments, anomalies)
                          for n, m in zip(numbers, parts.values(), strict=True)})  # fmt: skip

    def forget(self, user_id: str) -> int:
        """Drop what every bundle remembers of one user (erasure); returns how many
        memories were dropped."""
        return sum(
            m.segments.forget(user_id) + m.anomalies.forget(user_id) + m.churn.forget(user_id)
            for m in self.parts.values()
        )

    def upgrade(self, fresh: Callable[[], Models]) -> list[int]:
        """Replace the churn scorers of bundles from an older layout (a bare learned model,
        trained on other features) or for another horizon by fresh ones; returns the
        partitions changed. The analytic scorer alerts again at once, the learned model
        relearns (the guard keeps it from alerting until it is proven)."""
        changed = []
        for p, m in sorted(self.parts.items()):
            new = fresh().churn
            if not isinstance(m.churn, GuardedChurn) or m.churn.horizon_days != new.horizon_days:
                m.churn = new
                changed.append(p)
            else:  # the annual-return prior is a setting (a state from before it had none)
                m.churn.season.set_prior(new.season.prior_odds)
        if changed:
            log.warning("partitions %s: churn scorers of an older layout or another horizon "
                        "replaced by fresh ones", changed)  # fmt: skip
        return changed

    @property
    def stream_time_ms(self) -> int:
        return max((m.stream_time_ms for m in self.parts.values()), default=0)

    @property
    def offsets(self) -> dict[str, int]:
        return {k: v for m in self.parts.values() for k, v in sorted(m.offsets.items())}

    @property
    def labels_learned(self) -> int:
        return sum(m.churn.model.n_learned for m in self.parts.values())

    def churn_metrics(self) -> dict[str, Any]:
        """Churn quality of all partitions, each weighted by its labels: the learned model's
        own progressive metrics (``auc``, ``log_loss``), and per scorer (``analytic``,
        ``model``, ``champion``: whichever alerts on each partition) the guard's metrics on
        the labels both were scored on; ``champions`` counts partitions per champion."""
        learned = [(m.churn.model.n_learned, m.churn.model.metrics) for m in self.parts.values()]
        out: dict[str, Any] = _weighted(learned, ("auc", "log_loss"))
        out["n_learned"] = float(self.labels_learned)
        out["n_positive"] = float(sum(m.churn.model.n_positive for m in self.parts.values()))
        guards = [m.churn.guard.metrics() for m in self.parts.values()]
        keys = ("auc", "log_loss", "brier", "precision", "recall")
        for name in (*NAMES, "champion"):
            each = [(g["effective_labels"], g[g["champion"] if name == "champion" else name])
                    for g in guards]  # fmt: skip
            out[name] = _weighted(each, keys)
            out[name]["labels"] = sum(n for n, _ in each)
        out["champions"] = dict(Counter(g["champion"] for g in guards))
        return out

    def segment_sizes(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for m in self.parts.values():
            total.update(m.segments.segment_sizes())
        return dict(sorted(total.items()))


def _weighted(
    each: Sequence[tuple[float, dict[str, float]]], keys: tuple[str, ...]
) -> dict[str, float]:
    """Means of ``keys`` over ``(weight, metrics)`` pairs, skipping NaN values."""
    out = {}
    for k in keys:
        pairs = [(n, m[k]) for n, m in each if n > 0 and math.isfinite(m[k])]
        total = sum(n for n, _ in pairs)
        out[k] = sum(n * v for n, v in pairs) / total if total else math.nan
    return out
