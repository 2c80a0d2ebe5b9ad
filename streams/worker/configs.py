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
from dataclasses import dataclass

from models.anomaly import AnomalyConfig, AnomalyDetector
from models.bundle import Models
from models.errors import InvalidConfig
from models.guard import GuardConfig
from models.guarded import GuardedChurn
from models.segments import SegmentConfig, SegmentModel
from models.similarity import RecConfig, scoring_variant
from streams.core.errors import ConfigError
from streams.core.payloads import RecArm
from streams.core.settings import Settings
from streams.core.values import PREFIX, rec_overrides
from streams.domain.recommendations import arm_model, rec_arm


def rec_config(settings: Settings) -> RecConfig:
    return RecConfig(
        session_window=settings.rec_session_window,
        half_life_days=settings.rec_half_life_days,
        max_neighbours=settings.rec_max_neighbours,
        knn_weight=settings.rec_knn_weight,
        item_ttl_s=round(settings.rec_item_ttl_days * 86_400),
    )


@dataclass(frozen=True, slots=True)
class RecArms:
    """The recommendation experiment (docs/recommendations.md): which arm a user is in, and
    each arm's scoring setting and ``model`` name. Arm A is the store's own setting.

    >>> arms = rec_arms(Settings(rec_arm_b_share=1.0, rec_arm_b='{"two_hop": 0}'))
    >>> arms.arm("u1"), arms.models["B"], arms.configs["B"].two_hop
    ('B', 'cooc-session-v1+two_hop=0', 0.0)
    """

    share: float
    configs: dict[RecArm, RecConfig]
    models: dict[RecArm, str]

    def arm(self, user_id: str) -> RecArm:
        return rec_arm(user_id, self.share)


def rec_arms(settings: Settings) -> RecArms:
    """The arms of ``SHOPSTREAM_REC_ARM_B_SHARE`` and ``SHOPSTREAM_REC_ARM_B`` (ConfigError
    if arm B overrides a learning parameter: the worker does not start)."""
    a, overrides = rec_config(settings), rec_overrides(settings.rec_arm_b)
    try:
        b = scoring_variant(a, overrides)
    except InvalidConfig as exc:
        raise ConfigError(f"{PREFIX}REC_ARM_B: {exc}") from exc
    return RecArms(
        share=settings.rec_arm_b_share,
        configs={"A": a, "B": b},
        models={"A": arm_model({}), "B": arm_model(overrides)},
    )


def segment_config(settings: Settings) -> SegmentConfig:
    return SegmentConfig(n_clusters=settings.segment_clusters)


def anomaly_config(settings: Settings) -> AnomalyConfig:
    return AnomalyConfig(
        burst_per_min=settings.anomaly_burst_per_min,
        cooldown_ms=settings.anomaly_cooldown_ms,
        bot_ttl_ms=settings.bot_ttl_ms,
    )


def guard_config(settings: Settings) -> GuardConfig:
    """The champion/challenger rule (docs/churn.md "Guarded model"). Constants other than
    the settings were set once, before any real-data run, and never tuned on one."""
    return GuardConfig(
        mode=settings.churn_guard, threshold=settings.churn_threshold, half_life_days=90.0,
        min_labels=settings.churn_min_labels, min_class=50, margin=0.01, z=2.0,
        decide_every=50,
    )  # fmt: skip


def churn_scorers(settings: Settings) -> GuardedChurn:
    """A fresh partition's churn scorers: learned model, analytic scorer and their guard."""
    return GuardedChurn.new(
        horizon_days=settings.churn_horizon_days, kind=settings.churn_model,
        guard=guard_config(settings), min_customers=settings.churn_min_customers,
        season_odds=settings.churn_season_odds,
    )  # fmt: skip


def model_factory(settings: Settings) -> Callable[[], Models]:
    """Makes a fresh bundle of one partition's models."""

    def fresh() -> Models:
        return Models(
            churn=churn_scorers(settings),
            segments=SegmentModel(segment_config(settings)),
            anomalies=AnomalyDetector(anomaly_config(settings)),
        )

    return fresh
