"""Answers the HTTP views compute from the worker's models (read only)."""

from __future__ import annotations

import math
from typing import Any

from models.alive import MODEL_VERSION as ANALYTIC_VERSION
from models.bundle import Models
from models.churn import model_version
from models.segments import LABELS as SEGMENT_LABELS
from streams.domain.churn import alert_score
from streams.domain.churn_state import ChurnState
from streams.domain.envelope import Envelope
from streams.domain.recommendations import iso_ms
from streams.worker.batch import BatchProcessor


def _json(v: Any) -> Any:
    """Metrics for JSON: floats rounded, NaN as ``None``, counts as ints, nested dicts too."""
    if isinstance(v, dict):
        return {k: int(x) if k.startswith("n_") and isinstance(x, float) and math.isfinite(x)
                else _json(x) for k, x in v.items()}  # fmt: skip
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return v


def model_status(processor: BatchProcessor) -> dict[str, Any]:
    """``GET /models``: the churn scorers -- which one alerts (the champion) and both
    scorers' quality on the same delayed labels, overall and per partition -- labels
    learned, segments, stream time, offsets and the last checkpoint."""
    models, settings = processor.parts.models, processor.settings
    m, kind = models.churn_metrics(), settings.churn_model
    # restored models keep the kind they were trained as, whatever the setting says now
    versions = sorted({ms.churn.model_version for ms in models.parts.values()})
    return {
        "churn": _json(
            {
                "version": ", ".join(versions or [ANALYTIC_VERSION]),
                "versions": {"analytic": ANALYTIC_VERSION, "model": model_version(kind)},
                "guard": settings.churn_guard,
                **m,
            }
        ),
        "partitions": {
            str(p): _partition(ms, processor.parts.states.get(p))
            for p, ms in sorted(models.parts.items())
        },
        "segments": models.segment_sizes(),
        "stream_time": iso_ms(models.stream_time_ms),
        "offsets": models.offsets,
        "last_checkpoint": processor.checkpointer.last_path,
    }


def _partition(ms: Models, state: ChurnState | None) -> dict[str, Any]:
    """One partition: its event-time clock, labels, users, which scorer alerts, the guard's
    metrics of both."""
    churn = ms.churn
    out: dict[str, Any] = _json(
        {
            "clock_ms": state.clock_ms if state is not None else None,
            "labels": churn.model.n_learned,
            "users": len(ms.segments.users),
            "champion": churn.champion,
            "alerts_from": churn.model_version,
            "churn": churn.metrics(),
        }
    )
    return out


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
    if env.partition in parts.models.parts:  # what an alert would say now (the champion)
        prob = alert_score(models.churn, env.profile, now)[0]
        p_churn = round(prob, 4) if math.isfinite(prob) else None
    return {
        "segment": {"name": name, "label": SEGMENT_LABELS.get(name, name), "rfm": [r, f, m]},
        "churn_probability": p_churn,
        "as_of": iso_ms(now),
    }
