"""The undo hashes (streams.worker.undo) against a real Redis: a crash after a checkpoint,
or a move to a worker without the dead one's files, ends as a run without the fault.

The worker's batch code runs for real on in-memory topics and table (tests.support.fakes);
Redis is the real server (the scripts are Lua). The chaos suite proves the same with real
Kafka: tests/chaos/test_short.py (kill -9) and tests/chaos/test_exactly_once.py (kill -9
during a rebalance, a frozen worker whose partition moved)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from streams.core.errors import Fenced
from streams.core.settings import Settings
from streams.domain.envelope import id_hash
from streams.domain.recommendations import rec_arm
from streams.tools.generate import generate
from tests.support.fakes import assign, fake_shop, message, new_processor, topic_of

pytestmark = pytest.mark.integration

OUTPUTS = ("recommendations", "churn_alerts", "segments", "anomalies", "dlq", "alert_outcomes")


def workload(topic: str) -> list[list[Any]]:
    events, _ = generate(users=60, seed=5, days=120, bots=1)
    msgs = [message(topic, 0, n, e["user_id"].encode(), orjson.dumps(e))
            for n, e in enumerate(events)]  # fmt: skip
    return [msgs[i : i + 500] for i in range(0, len(msgs), 500)]


def base(settings: Settings) -> Settings:
    return settings.with_(
        churn_min_labels=0, max_events_per_min=0, churn_alert_max_age_days=0.0,
        idle_advance_s=0.0, checkpoint_key="k", checkpoint_interval_s=1e9,
    )  # fmt: skip


async def run(settings: Settings, batches: list[list[Any]], crash: tuple[int, int] | None,
              redis: aioredis.Redis, *, move: bool = False) -> Any:  # fmt: skip
    """All batches through one worker; with ``crash = (c, k)``: a checkpoint after batch
    ``c``, a crash after batch ``k``; the next worker (``move``: another one, without the
    dead one's data dir) is handed the batches again from where the settle says."""
    shop = fake_shop(settings)
    proc = new_processor(shop)
    assert await assign(proc, redis) == {}
    n = 0
    while n < len(batches):
        await proc.process(batches[n])
        if crash and n == crash[0]:
            await proc.checkpoint()
        if crash and n == crash[1]:
            moved = shop.settings.with_(data_dir=f"{settings.data_dir}-next")
            # the table as it is; the models of the checkpoint (restart) or from Redis
            proc = new_processor(replace(shop, settings=moved) if move else shop)
            replays = await assign(proc, redis)
            at = batches[crash[0]][-1].message.offset + 1
            assert replays == {0: at}, "read again from the stored models' offset"
            n, crash = crash[0], None
        n += 1
    return shop


async def stored_then_written(
    s: Settings, redis: aioredis.Redis, batches: list[list[Any]], written: int = 1,
    data_dir: str | None = None,
) -> tuple[Any, Any]:  # fmt: skip
    """(shop, processor) of a worker assigned partition 0 that processed the first batch,
    stored its models (a checkpoint: a new undo epoch) and then ``written`` more batches."""
    shop = fake_shop(s if data_dir is None else s.with_(data_dir=data_dir))
    proc = new_processor(shop)
    await assign(proc, redis)
    await proc.process(batches[0])
    await proc.checkpoint()
    for batch in batches[1 : 1 + written]:
        await proc.process(batch)
    return shop, proc


def sent(shop: Any, name: str) -> list[bytes]:
    return list(topic_of(shop, name).sent)


@pytest.mark.parametrize("move", [False, True], ids=["restart", "move"])
async def test_a_crash_after_the_checkpoint_ends_as_a_run_without_it(
    settings: Settings, redis_client: aioredis.Redis, tmp_path: Path, move: bool
) -> None:
    """Restart: the same worker, on its own checkpoint. Move: another worker, without the
    dead one's files (kill -9 during a rebalance): models from Redis. Either way every
    output and envelope equals the clean run's (it fails with the roll-back removed)."""
    s = base(settings)
    batches = workload(s.topic_events)
    clean = await run(s.with_(data_dir=str(tmp_path / "clean"),
                              redis_prefix=s.redis_prefix + "c:"), batches, None,
                      redis_client)  # fmt: skip
    crash = (2, len(batches) - 4)  # most of the stream between the checkpoint and the crash
    crashed = await run(s.with_(data_dir=str(tmp_path / "crashed")), batches, crash,
                        redis_client, move=move)  # fmt: skip
    assert dict(crashed.profiles.data) == dict(clean.profiles.data)
    for name in OUTPUTS:
        assert sent(crashed, name) == sent(clean, name), f"{name} differ"
    assert sent(clean, "churn_alerts") and sent(clean, "segments"), "the workload must alert"


async def test_no_roll_back_when_the_log_lost_the_records_after_the_models(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Retention past the stored models' offset: reading the partition again cannot bring
    the deleted records back, so putting envelopes back would lose their events for good.
    The envelopes stay; only the models miss those events."""
    s = base(settings)
    batches = workload(s.topic_events)
    shop = fake_shop(s)
    proc = new_processor(shop)
    await assign(proc, redis_client)
    for n, batch in enumerate(batches[:5]):
        await proc.process(batch)
        if n == 1:
            await proc.checkpoint()
    before = dict(shop.profiles.data)
    again = new_processor(shop)
    assert await assign(again, redis_client, log_start=batches[3][0].message.offset) == {}
    assert dict(shop.profiles.data) == before


async def test_a_worker_whose_partition_moved_keeps_no_envelope(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A frozen worker wakes up after its partition moved: its undo write is refused
    (Fenced), so it can neither write envelopes nor spoil the new owner's undo hash."""
    s = base(settings)
    batches = workload(s.topic_events)
    _, old = await stored_then_written(s, redis_client, batches, written=0)
    new = new_processor(fake_shop(s.with_(data_dir=s.data_dir + "-new")))
    await assign(new, redis_client)
    key = old.parts.undo.hash_key(0)
    stored = await redis_client.hgetall(key)
    with pytest.raises(Fenced):
        await old.process(batches[1])
    assert await redis_client.hgetall(key) == stored


async def test_an_erased_user_never_comes_back_from_the_undo_hash(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    s = base(settings)
    batches = workload(s.topic_events)
    shop, proc = await stored_then_written(s, redis_client, batches)
    async def log_ends(*tps: Any) -> dict[Any, int]:  # the erasure fences up to them
        return {tp: 10**6 for tp in tps}

    shop.app.consumer.highwaters = log_ends  # type: ignore[attr-defined]
    shop.app.consumer.earliest_offsets = log_ends  # type: ignore[attr-defined]
    undo = (await proc.parts.undo.read(redis_client, [0]))[0]
    assert undo.entries is not None
    uid = next(u for u, before in sorted(undo.entries.items()) if before is not None)
    await proc.parts.forget_undo(uid)  # what forget does first
    undo = (await proc.parts.undo.read(redis_client, [0]))[0]
    assert undo.entries is not None and undo.entries[uid] is None
    rec_arm(uid, 0.5)  # the memoised arms and event-id digests name the user
    assert rec_arm.cache_info().currsize > 0 and id_hash.cache_info().currsize > 0
    await proc.forget(uid)  # (then a checkpoint without the user starts a new epoch)
    undo = (await proc.parts.undo.read(redis_client, [0]))[0]
    assert undo.entries is not None and undo.entries.get(uid) is None
    assert rec_arm.cache_info().currsize == 0 and id_hash.cache_info().currsize == 0


async def test_a_tampered_entry_stops_the_roll_back_of_its_partition(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Whoever can write to Redis cannot plant an envelope: an entry that does not verify
    leaves the partition as it is (and is logged)."""
    s = base(settings)
    batches = workload(s.topic_events)
    shop, proc = await stored_then_written(s, redis_client, batches)
    key = proc.parts.undo.hash_key(0)
    uid = next(iter(proc.parts.undo.stashed[0]))
    await redis_client.hset(key, uid, b"0" * 64 + b'={"p": "planted"}')
    before = dict(shop.profiles.data)
    again = new_processor(shop)
    assert (await again.parts.undo.read(redis_client, [0]))[0].entries is None
    await assign(again, redis_client)
    assert dict(shop.profiles.data) == before
