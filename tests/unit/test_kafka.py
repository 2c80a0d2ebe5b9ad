"""The topics ``ensure_topics`` creates for Faust are the ones Faust would create itself."""

from __future__ import annotations

from streams.app import create_app
from streams.core.settings import Settings
from streams.kafka import faust_topics


def test_faust_topics_match_the_apps_changelog_and_leader_topic() -> None:
    settings = Settings(partitions=6).namespaced("tnames")
    shop = create_app(settings)
    changelog, leader = faust_topics(settings)
    table_topic = shop.profiles.changelog_topic
    assert changelog.name == table_topic.get_topic_name()
    assert changelog.num_partitions == table_topic.partitions == 6
    lag = str(settings.changelog_max_compaction_lag_ms)  # a deadline for erased profiles
    assert changelog.topic_configs == {
        "cleanup.policy": "compact", "max.compaction.lag.ms": lag, "segment.ms": lag
    }
    assert table_topic.compacting
    assert leader.name == shop.app._leader_assignor._leader_topic_name  # faust's own name
    assert leader.num_partitions == 1
