"""Partition models move with the partition through the real redis-server (signed, newest
wins); the rebalance itself is exercised by test_scale_out.py's joining worker."""

from __future__ import annotations

import redis.asyncio as aioredis

from streams.events import Event
from streams.models_runtime import Handover, Models, ModelSet
from streams.profile import features, update_profile
from streams.settings import Settings

T0 = 1_704_067_200_000
DAY = 86_400_000


def learned(settings: Settings, partition: int, labels: int, offset: int) -> Models:
    """A bundle that learned ``labels`` labels and includes the source up to ``offset``."""
    m = Models.fresh(settings)
    for i in range(labels):
        p = update_profile(None, Event(f"e{i}", "purchase", f"u{i}", "s", T0, item_id="i",
                                       price=5.0 + i))  # fmt: skip
        m.churn.learn_one(features(p, T0 + (i % 40) * DAY), i % 2 == 0)
    m.seen(settings.topic_events, partition, offset, T0)
    return m


async def test_the_next_owner_takes_newer_models_and_keeps_newer_own_ones(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    s = settings.with_(checkpoint_key="handover-key")
    old_owner, new_owner = ModelSet(), ModelSet()
    old_owner.parts = {0: learned(s, 0, 30, offset=99), 1: learned(s, 1, 10, offset=50)}
    new_owner.parts = {1: learned(s, 1, 12, offset=70)}  # its own copy is newer for 1
    handover = Handover(s)

    assert await handover.give(redis_client, old_owner, [0, 1, 7]) == [0, 1]  # 7: no models
    taken = await handover.take(redis_client, new_owner, [0, 1, 7])

    assert taken == [0]
    assert new_owner.parts[0].churn.n_learned == 30
    assert new_owner.parts[0].offsets == {f"{s.topic_events}:0": 99}
    assert new_owner.parts[1].churn.n_learned == 12  # newer offset kept
    assert 7 not in new_owner.parts


async def test_tampered_or_foreign_models_are_refused(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    s = settings.with_(checkpoint_key="handover-key")
    owner = ModelSet(parts={0: learned(s, 0, 5, offset=9)})
    handover = Handover(s)
    await handover.give(redis_client, owner, [0])
    raw = await redis_client.get(handover.key(0))
    await redis_client.set(handover.key(0), raw[:-1] + bytes([raw[-1] ^ 1]))
    assert await handover.take(redis_client, ModelSet(), [0]) == []  # tampered
    await handover.give(redis_client, owner, [0])
    other = Handover(s.with_(checkpoint_key="another-key"))
    assert await other.take(redis_client, ModelSet(), [0]) == []  # signed with another key


async def test_without_a_signing_key_nothing_is_stored(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    handover = Handover(settings)  # no SHOPSTREAM_CHECKPOINT_KEY
    owner = ModelSet(parts={0: learned(settings, 0, 5, offset=9)})
    assert not handover.enabled
    assert await handover.give(redis_client, owner, [0]) == []
    assert await redis_client.exists(handover.key(0)) == 0
