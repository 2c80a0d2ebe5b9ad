"""Review of the undo hashes (branch undo-redis): sequences that leave a partition's undo
hash unable to bring its models and envelopes back together. Each test fails on the
reviewed code; the assertion names what the design promises (streams/worker/undo.py).

Same harness as tests/integration/test_undo.py: the real batch code on in-memory topics
and table, the real Redis (the Lua scripts)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from streams.core.settings import Settings
from tests.integration.test_undo import OUTPUTS, base, sent, stored_then_written, workload
from tests.support.fakes import assign, fake_shop, new_processor

pytestmark = pytest.mark.integration


async def assign_nothing(proc: Any, redis: Any) -> None:
    """An assignment without partition 0 (what ``assign`` does, for no partition): the
    settle stores and drops the bundles of partitions not assigned (the strays)."""
    parts = proc.parts
    parts.shop.runtime.redis = redis

    async def claim_only(partitions: set[int]) -> None:
        await parts.sources.claim(redis, partitions)

    parts.check_sources = claim_only
    parts.on_assigned(set())
    await proc.prepare()


def last(batch: list[Any]) -> int:
    return int(batch[-1].message.offset)


async def clean_run(s: Settings, batches: list[list[Any]], redis: aioredis.Redis,
                    tmp_path: Path) -> Any:  # fmt: skip
    shop = fake_shop(s.with_(data_dir=str(tmp_path / "clean"), redis_prefix=s.redis_prefix + "c:"))
    proc = new_processor(shop)
    await assign(proc, redis)
    for batch in batches:
        await proc.process(batch)
    return shop


async def test_a_stray_bundle_newer_than_the_undo_epoch_keeps_the_roll_back(
    settings: Settings, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """Worker A writes its local checkpoint, then dies before ``store_models`` (the two
    steps of ``BatchProcessor.checkpoint``), after more batches. Restarted on its data dir
    it is not given the partition back: its settle stores the restored bundle as a stray
    (``Handover.settle`` -> ``give`` without owner: no undo epoch started) over the one
    the undo hash was started at. The next owner then finds the undo hash's models gone
    (``replayable``: "missing or refused"), does not roll back and goes on with models that
    never learn the events between the local checkpoint and the crash."""
    s = base(settings)
    batches = workload(s.topic_events)
    shop = fake_shop(s.with_(data_dir=str(tmp_path / "a")))
    a = new_processor(shop)
    await assign(a, redis_client)
    await a.process(batches[0])
    await a.process(batches[1])
    await a.checkpoint()  # local and Redis: epoch E
    epoch = last(batches[1])
    await a.process(batches[2])
    await a.process(batches[3])
    # the local save went through, the crash came before store_models
    await a.checkpointer.save(a.parts.models, shop.app.producer.flush)
    await a.process(batches[4])  # ... then kill -9
    restarted = new_processor(shop)  # the checkpoint of batch 3
    await assign_nothing(restarted, redis_client)
    b = new_processor(replace(shop, settings=shop.settings.with_(data_dir=str(tmp_path / "b"))))
    replays = await assign(b, redis_client)
    assert replays == {0: epoch + 1}, (
        "the partition must go back to the models its undo hash was started at; the stray "
        f"store moved {b.parts.handover.key(0)} past them")


async def test_a_batch_that_ends_after_its_partition_was_revoked_keeps_its_envelopes(
    settings: Settings, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """A revocation whose hand-over times out (``HANDOVER_TIMEOUT_S``: a batch holds the
    lock, e.g. retrying Redis) goes on to ``Partitions.revoked``, which drops the
    partition's undo epoch while that batch still runs; its envelopes are then written
    without their undo entries (``UndoStore.wants``/``stash`` skip a partition without an
    epoch), though the owner token is still ours. Killed next, the next owner finds an
    empty undo hash: no roll-back, and the batch's events never teach its models."""
    s = base(settings)
    batches = workload(s.topic_events)
    clean = await clean_run(s, batches, redis_client, tmp_path)
    shop, a = await stored_then_written(s, redis_client, batches, written=0,
                                        data_dir=str(tmp_path / "a"))  # fmt: skip
    epoch = last(batches[0])
    # on_revoked: hand_over timed out waiting for the lock (before, the revocation then
    # dropped the partition's undo epoch while that batch still ran)
    a.parts.on_revoked([0])
    await a.process(batches[1])  # the batch holding the lock writes its envelopes now
    b = new_processor(replace(shop, settings=shop.settings.with_(data_dir=str(tmp_path / "b"))))
    replays = await assign(b, redis_client)
    assert replays == {0: epoch + 1}, "the batch's envelopes were written unrecorded"
    for batch in batches[1:]:
        await b.process(batch)
    assert dict(shop.profiles.data) == dict(clean.profiles.data)
    for name in OUTPUTS:
        assert sent(shop, name)[-len(sent(clean, name)):] == sent(clean, name), name


async def test_a_worker_waking_before_the_new_owner_claims_cannot_end_its_undo_epoch(
    settings: Settings, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """Owner tokens moved at the new owner's *first batch* (``settle`` -> ``claim``), after
    its table recovery, not at its assignment. Worker A, frozen until its partition moved,
    woke in between: its batch in flight passed the undo script's token check (the token
    was still A's), wrote envelopes the new owner's recovered table does not hold, and its
    revocation's hand-over stored its models, whose ``_GIVE`` deleted the undo hash and
    started an epoch at them. B then took A's models (that learned the batch) with a table
    without it: no roll-back, and the batch learned a second time. Now B claims at
    assignment (``plan_replays``): A's batch is fenced and its hand-over stores nothing."""
    from streams.core.errors import Fenced
    from tests.support.fakes import FakeTable

    s = base(settings)
    batches = workload(s.topic_events)
    clean = await clean_run(s, batches, redis_client, tmp_path)
    shop, a = await stored_then_written(s, redis_client, batches, written=0,
                                        data_dir=str(tmp_path / "a"))  # fmt: skip
    epoch = last(batches[0])
    await a.process(batches[1])  # ... A freezes; B is assigned the partition: it claims it
    b_shop = replace(shop, settings=shop.settings.with_(data_dir=str(tmp_path / "b")),
                     profiles=FakeTable(data=dict(shop.profiles.data)))  # fmt: skip
    b = new_processor(b_shop)
    b.parts.shop.runtime.redis = redis_client
    b.parts.note_log_starts({0: 0})
    b.parts.on_assigned({0})
    await b.parts.plan_replays({0})  # at assignment, before the table's recovery
    with pytest.raises(Fenced):  # A wakes: its batch in flight writes nothing
        await a.process(batches[2])
    a.parts.on_revoked([0])  # its rebalance: the hand-over stores nothing
    await a.parts.hand_over()
    replays = await assign(b, redis_client)
    assert replays == {0: epoch + 1}, "A's late hand-over ended the undo epoch"
    for batch in batches[1:]:  # read again from the stored models
        await b.process(batch)
    assert dict(b_shop.profiles.data) == dict(clean.profiles.data)
    for name in ("churn_alerts", "anomalies", "segments"):  # model-derived
        assert set(sent(clean, name)) <= set(sent(shop, name)), name
