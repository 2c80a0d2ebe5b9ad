"""Answers the HTTP views compute from the worker's models (read only)."""

from __future__ import annotations

from typing import Any

from models.churn import model_version
from models.segments import LABELS as SEGMENT_LABELS
from streams.domain.envelope import Envelope
from streams.domain.profile import features
from streams.domain.recommendations import iso_ms
from streams.worker.batch import BatchProcessor


def model_status(processor: BatchProcessor) -> dict[str, Any]:
    """``GET /models``: version, labels learned (total and per partition), quality."""
    models, settings = processor.parts.models, processor.settings
    m = models.churn_metrics()
    nan_to_none = {
        k: None if v != v else int(v) if k.startswith("n_") else round(v, 4)
        for k, v in m.items()
    }
    # restored models keep the kind they were trained as, whatever the setting says now
    versions = sorted({ms.churn.model_version for ms in models.parts.values()})
    return {
        "churn": {
            "version": ", ".join(versions or [model_version(settings.churn_model)]),
            **nan_to_none,
        },
        "partitions": {
            str(p): {"labels": ms.churn.n_learned, "users": len(ms.segments.users)}
            for p, ms in sorted(models.parts.items())
        },
        "segments": models.segment_sizes(),
        "stream_time": iso_ms(models.stream_time_ms),
        "offsets": models.offsets,
        "last_checkpoint": processor.checkpointer.last_path,
    }


def describe(processor: BatchProcessor, env: Envelope) -> dict[str, Any]:
    """Segment and churn probability of one user, at the partition's event-time clock."""
    parts = processor.parts
    state = parts.states.get(env.partition)
    now = max(state.clock_ms if state else 0, env.profile.last_seen_ms)
    # read only: a user of a partition not held here (e.g. a standby copy) gets the
    # segment by the prior thresholds and no churn probability
    models = parts.models.parts.get(env.partition) or parts.fresh()
    name, (r, f, m) = models.segments.segment(env.profile, now)
    p_churn: float | None = None
    if env.partition in parts.models.parts:
        p_churn = round(models.churn.predict_proba_one(features(env.profile, now)), 4)
    return {
        "segment": {"name": name, "label": SEGMENT_LABELS.get(name, name), "rfm": [r, f, m]},
        "churn_probability": p_churn,
        "as_of": iso_ms(now),
    }
