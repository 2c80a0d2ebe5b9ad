"""Partition models move with the partition through the real redis-server (signed for their
key, an older copy never replaces a newer one, plain JSON: nothing read from Redis is ever
unpickled); the rebalance itself is exercised by test_scale_out.py's joining worker."""

from __future__ import annotations

import os
import pickle
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from models import checkpoint as ck
from models.bundle import Models, ModelSet
from streams.core.events import Event
from streams.core.settings import Settings
from streams.domain.profile import features, update_profile
from streams.worker.configs import model_factory
from streams.worker.handover import Handover
from tests.support.nopickle import no_unpickling

T0 = 1_704_067_200_000
DAY = 86_400_000


def learned(settings: Settings, partition: int, labels: int, offset: int) -> Models:
    """A bundle that learned ``labels`` labels and includes the source up to ``offset``."""
    m = model_factory(settings)()
    for i in range(labels):
        p = update_profile(None, Event(f"e{i}", "purchase", f"u{i}", "s", T0, item_id="i",
                                       price=5.0 + i))  # fmt: skip
        m.churn.learn(features(p, T0 + (i % 40) * DAY), None, i % 2 == 0, T0 + i * DAY)
        m.segments.update(p, T0 + i * DAY)
        m.anomalies.observe(Event(f"v{i}", "view", p.user_id, "s", T0 + i * 500, item_id="i"))
    m.seen(settings.topic_events, partition, offset, T0)
    return m


def keyed(settings: Settings) -> Settings:
    return settings.with_(checkpoint_key="handover-key")


async def test_the_next_owner_takes_newer_models_and_keeps_newer_own_ones(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    s = keyed(settings)
    old_owner, new_owner = ModelSet(), ModelSet()
    old_owner.parts = {0: learned(s, 0, 30, offset=99), 1: learned(s, 1, 10, offset=50)}
    new_owner.parts = {1: learned(s, 1, 12, offset=70)}  # its own copy is newer for 1
    handover = Handover(s)

    assert await handover.give(redis_client, old_owner, [0, 1, 7]) == {0: True, 1: True}
    taken = await handover.take(redis_client, new_owner, [0, 1, 7])

    assert taken == [0]
    assert new_owner.parts[0].churn.model.n_learned == 30
    assert new_owner.parts[0].offsets == {f"{s.topic_events}:0": 99}
    assert new_owner.parts[1].churn.model.n_learned == 12  # newer offset kept
    assert 7 not in new_owner.parts


async def test_an_older_copy_never_replaces_a_newer_stored_one(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A worker that got a partition but gave it up before its first batch still holds an
    older copy (e.g. from its checkpoint); storing it must not undo the newer one."""
    s = keyed(settings)
    handover = Handover(s)
    await handover.give(redis_client, ModelSet(parts={0: learned(s, 0, 30, offset=500)}), [0])
    stale = ModelSet(parts={0: learned(s, 0, 5, offset=200)})
    assert await handover.give(redis_client, stale, [0]) == {0: False}  # stored one is newer
    fresh_owner = ModelSet()
    assert await handover.take(redis_client, fresh_owner, [0]) == [0]
    assert fresh_owner.parts[0].churn.model.n_learned == 30


async def test_settling_releases_partitions_owned_elsewhere_and_takes_newer_ones(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    s = keyed(settings)
    handover = Handover(s)
    await handover.give(redis_client, ModelSet(parts={1: learned(s, 1, 8, offset=40)}), [1])
    # restored from a checkpoint: partitions 0 and 1; the assignment is partition 1 only
    worker = ModelSet(parts={0: learned(s, 0, 6, offset=30), 1: learned(s, 1, 3, offset=10)})

    released, taken = await handover.settle(redis_client, worker, {1})

    assert (released, taken) == ([0], [1])
    assert sorted(worker.parts) == [1] and worker.parts[1].churn.model.n_learned == 8
    other = ModelSet()  # whoever owns partition 0 finds the released copy
    assert await handover.take(redis_client, other, [0]) == [0]
    assert other.parts[0].churn.model.n_learned == 6


async def test_tampered_misplaced_or_foreign_models_are_refused(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    s = keyed(settings)
    handover = Handover(s)
    await handover.give(redis_client, ModelSet(parts={0: learned(s, 0, 5, offset=9)}), [0])
    raw = await redis_client.hget(handover.key(0), "data")
    await redis_client.hset(handover.key(0), "data", raw[:-1] + bytes([raw[-1] ^ 1]))
    assert await handover.take(redis_client, ModelSet(), [0]) == []  # tampered
    # partition 0's genuine bundle copied under partition 1's key: signed for another key
    await redis_client.hset(handover.key(1), mapping={"offset": 9, "data": raw})
    assert await handover.take(redis_client, ModelSet(), [1]) == []
    await redis_client.delete(handover.key(0))
    await handover.give(redis_client, ModelSet(parts={0: learned(s, 0, 5, offset=9)}), [0])
    other = Handover(s.with_(checkpoint_key="another-key"))
    assert await other.take(redis_client, ModelSet(), [0]) == []  # signed with another key
    await redis_client.hset(handover.key(0), "offset", 99)  # a rollback posing as newer
    assert await handover.take(redis_client, ModelSet(), [0]) == []  # signed for offset 9


async def test_after_an_erasure_our_copies_replace_stored_ones_as_new_as_them(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """``forget`` removes the user from the models held here, then rewrites the stored
    copies that are not newer (a newer one belongs to the partition's current owner;
    ``Partitions.rewrite_models``, which also starts new undo epochs for its own)."""
    s = keyed(settings)
    handover = Handover(s)
    before = ModelSet(parts={0: learned(s, 0, 5, offset=9), 1: learned(s, 1, 5, offset=9)})
    await handover.give(redis_client, before, [0, 1])
    ours = ModelSet(parts={0: learned(s, 0, 2, offset=9), 1: learned(s, 1, 2, offset=8)})
    stored = await handover.give(redis_client, ours, [0, 1], or_equal=True)  # what forget does
    assert stored == {0: True, 1: False}  # 1's stored one is newer
    back = ModelSet()
    assert await handover.take(redis_client, back, [0, 1]) == [0, 1]
    assert (back.parts[0].churn.model.n_learned, back.parts[1].churn.model.n_learned) == (2, 5)


async def test_without_a_signing_key_nothing_is_stored(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    handover = Handover(settings)  # no SHOPSTREAM_CHECKPOINT_KEY
    owner = ModelSet(parts={0: learned(settings, 0, 5, offset=9)})
    assert not handover.enabled
    assert await handover.give(redis_client, owner, [0]) == {}
    assert await redis_client.exists(handover.key(0)) == 0


async def test_bundles_come_back_from_redis_without_unpickling_anything(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a Redis value cannot reach an unpickler. Under the tripwire (every
    unpickler raises, every attempt is recorded) the bundles come back whole; the format-1
    code (signed pickles) took nothing here and recorded the attempts."""
    s = keyed(settings)
    handover = Handover(s)
    owner = ModelSet(parts={0: learned(s, 0, 30, offset=99), 1: learned(s, 1, 12, offset=50)})
    assert await handover.give(redis_client, owner, [0, 1]) == {0: True, 1: True}
    with no_unpickling(monkeypatch) as attempts:
        taken = await handover.take(redis_client, (back := ModelSet()), [0, 1])
    assert attempts == []
    assert taken == [0, 1] and back.to_dict() == owner.to_dict()
    stored = await redis_client.hget(handover.key(0), "data")
    assert stored.split(b"\n", 1)[1][:1] == b"{"  # the payload is JSON


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import os; os.environ['SHOPSTREAM_TEST_PWNED'] = '1'",))


def format_1(payload: bytes, meta: dict[str, Any], secret: bytes) -> bytes:
    """A bundle as the format-1 code stored it: signed header + pickle."""
    header: dict[str, Any] = {"format": ck.FORMAT, "version": 1, "meta": meta,
                              "payload_len": len(payload)}  # fmt: skip
    header["hmac"] = ck._signature(secret, header, payload)
    return orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + b"\n" + payload


async def test_a_format_1_pickle_bundle_in_redis_is_refused_counted_and_never_unpickled(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Left in Redis by the previous version (or written by an attacker who has the key):
    correctly signed for its key and offset, and still refused -- one log line each,
    counted -- and the owner goes on with its own copy."""
    s = keyed(settings)
    reported: list[str] = []
    handover = Handover(s, on_refused=reported.append)
    secret = s.checkpoint_key.encode()
    for p, obj in ((0, learned(s, 0, 30, offset=99)), (1, Exploit())):
        key = handover.key(p)
        data = format_1(pickle.dumps(obj), {"offset": 99, "key": key}, secret)
        await redis_client.hset(key, mapping={"offset": 99, "data": data})
    own = ModelSet(parts={0: learned(s, 0, 3, offset=10)})
    with no_unpickling(monkeypatch) as attempts:
        assert await handover.take(redis_client, own, [0, 1]) == []
    assert attempts == [] and "SHOPSTREAM_TEST_PWNED" not in os.environ
    assert handover.refused == 2 and reported == ["handover", "handover"]
    assert caplog.text.count("version 1 (a pickle) is no longer read") == 2
    assert own.parts[0].churn.model.n_learned == 3 and 1 not in own.parts
