"""The churn alert's randomised group (issue 18): a hash of alert_id and the holdout share."""

from __future__ import annotations

import pytest

from streams.core.errors import ConfigError
from streams.core.settings import Settings
from streams.domain.alerts import alert_group, alert_id
from streams.domain.churn_state import ChurnConfig

IDS = [alert_id(f"u{i}", 1_704_067_200_000 + i) for i in range(20_000)]


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5])
def test_the_holdout_is_the_configured_share_of_alerts(share: float) -> None:
    held = sum(alert_group(a, share) == "holdout" for a in IDS) / len(IDS)
    assert abs(held - share) < 0.01


def test_the_group_is_deterministic_and_nested_across_shares() -> None:
    """Same id, same group, on every worker and in every replay; raising the share only
    moves alerts from treatment to holdout."""
    assert [alert_group(a, 0.1) for a in IDS[:50]] == [alert_group(a, 0.1) for a in IDS[:50]]
    assert all(alert_group(a, 0.2) == "holdout" for a in IDS if alert_group(a, 0.1) == "holdout")


def test_the_setting_reaches_the_alert_policy_and_is_checked() -> None:
    settings = Settings.from_env({"SHOPSTREAM_ALERT_HOLDOUT_SHARE": "0.25"})
    assert ChurnConfig.from_settings(settings).alert_policy.holdout_share == 0.25
    assert Settings().alert_holdout_share == 0.1
    for bad in ("1", "-0.1", "1.5"):
        with pytest.raises(ConfigError, match="ALERT_HOLDOUT_SHARE"):
            Settings.from_env({"SHOPSTREAM_ALERT_HOLDOUT_SHARE": bad})


def test_an_alert_from_the_churn_step_carries_its_group() -> None:
    from models.guard import GuardConfig
    from models.guarded import GuardedChurn
    from streams.core.events import Event
    from streams.domain.churn import advance, step
    from streams.domain.churn_state import ChurnState
    from streams.domain.profile import Profile

    day, t0 = 86_400_000, 1_704_067_200_000
    scorer = GuardedChurn.new(horizon_days=30.0, kind="logistic", min_customers=1,
        guard=GuardConfig(mode="auto", threshold=0.5, half_life_days=90.0, min_labels=500,
                          min_class=50, margin=0.01, z=2.0, decide_every=50))  # fmt: skip
    alerts = []
    for share in (0.0, 0.999):
        cfg = ChurnConfig.from_settings(Settings(alert_holdout_share=share))
        state, profiles = ChurnState(), dict[str, Profile]()
        ev = Event("e1", "purchase", "u1", "s1", t0, item_id="i1", price=10.0)
        profiles["u1"], _, _ = step(state, None, ev, scorer, cfg, profiles.get)
        alerts += advance(state, t0 + 60 * day, profiles.get, scorer, cfg)[0]
    assert [a["group"] for a in alerts] == ["treatment", "holdout"]
