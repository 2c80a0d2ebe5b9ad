"""The models' configurations, built from the one :class:`Settings` object.

The models library takes plain values; every value that is a setting comes from here, so a
setting has one default (in :mod:`streams.core.settings`) and the offline evaluations run
what the worker runs.

>>> from streams.core.settings import Settings
>>> rec_config(Settings()).session_window == Settings().rec_session_window
True
"""

from __future__ import annotations

from collections.abc import Callable

from models.anomaly import AnomalyConfig, AnomalyDetector
from models.bundle import Models
from models.churn import ChurnModel
from models.segments import SegmentConfig, SegmentModel
from models.similarity import RecConfig
from streams.core.settings import Settings


def rec_config(settings: Settings) -> RecConfig:
    return RecConfig(
        session_window=settings.rec_session_window,
        half_life_days=settings.rec_half_life_days,
        max_neighbours=settings.rec_max_neighbours,
        knn_weight=settings.rec_knn_weight,
    )


def segment_config(settings: Settings) -> SegmentConfig:
    return SegmentConfig(n_clusters=settings.segment_clusters)


def anomaly_config(settings: Settings) -> AnomalyConfig:
    return AnomalyConfig(
        burst_per_min=settings.anomaly_burst_per_min,
        cooldown_ms=settings.anomaly_cooldown_ms,
        bot_ttl_ms=settings.bot_ttl_ms,
    )


def model_factory(settings: Settings) -> Callable[[], Models]:
    """Makes a fresh bundle of one partition's models."""

    def fresh() -> Models:
        return Models(
            churn=ChurnModel(kind=settings.churn_model),
            segments=SegmentModel(segment_config(settings)),
            anomalies=AnomalyDetector(anomaly_config(settings)),
        )

    return fresh
