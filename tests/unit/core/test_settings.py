from __future__ import annotations

import pytest

from streams.core.errors import ConfigError
from streams.core.settings import Settings, markdown_table


def test_defaults_are_the_documented_contract() -> None:
    s = Settings.from_env({})
    assert (s.topic_events, s.topic_dlq, s.topic_recommendations, s.topic_churn_alerts) == (
        "shop.events",
        "shop.events.dlq",
        "shop.recommendations",
        "shop.churn-alerts",
    )


def test_every_field_is_documented_in_the_table() -> None:
    table = markdown_table()
    for name in Settings.__dataclass_fields__:
        assert f"SHOPSTREAM_{name.upper()}" in table


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHOPSTREAM_PARTITIONS": "0"}, "PARTITIONS must be positive"),
        ({"SHOPSTREAM_BATCH_WITHIN_MS": "0"}, "BATCH_WITHIN_MS must be positive"),
        ({"SHOPSTREAM_WEB_PORT": "x"}, "SHOPSTREAM_WEB_PORT='x' is not a valid int"),
        ({"SHOPSTREAM_CHURN_THRESHOLD": "1.5"}, "CHURN_THRESHOLD"),
        ({"SHOPSTREAM_CHURN_IDLE_DAYS": "40"}, "CHURN_IDLE_DAYS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
