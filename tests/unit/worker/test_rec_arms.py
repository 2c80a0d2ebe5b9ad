"""The recommendation experiment's settings (streams.worker.configs.rec_arms): arm B may only
change scoring, and a bad setting stops the worker with a message naming the variable."""

from __future__ import annotations

import pytest

from streams.core.errors import ConfigError
from streams.core.settings import Settings
from streams.worker.configs import rec_arms


def test_arm_b_overrides_scoring_only_and_is_named_in_the_model() -> None:
    arms = rec_arms(Settings(rec_arm_b_share=0.2, rec_arm_b='{"two_hop": 0, "alpha": 0.3}'))
    a, b = arms.configs["A"], arms.configs["B"]
    assert (b.two_hop, b.alpha) == (0.0, 0.3) and (a.two_hop, a.alpha) != (0.0, 0.3)
    assert (b.session_window, b.half_life_days, b.score_items) == (
        a.session_window, a.half_life_days, a.score_items)  # fmt: skip
    assert arms.models == {"A": "cooc-session-v1", "B": "cooc-session-v1+alpha=0.3,two_hop=0"}
    assert rec_arms(Settings()).arm("anyone") == "A"  # no experiment by default


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rec_arm_b": '{"half_life_days": 2}'}, "SHOPSTREAM_REC_ARM_B: not scoring"),
        ({"rec_arm_b": '{"knn_weight": 0.5}'}, "SHOPSTREAM_REC_ARM_B: knn_weight"),
        ({"rec_arm_b": "[1]"}, "SHOPSTREAM_REC_ARM_B must be a JSON object"),
        ({"rec_arm_b_share": "1.5"}, "SHOPSTREAM_REC_ARM_B_SHARE must be in"),
    ],
)
def test_a_bad_experiment_setting_is_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        rec_arms(Settings.from_values(values))
