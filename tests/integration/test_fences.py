"""Issue 15, holes 1 and 5 with the real worker: fences that know where they came from.

A worker must never silently skip or double-apply records because its stored state and the
log disagree: a recreated topic, fences ahead of the log, a Redis that lost its data, or
partitions added without moving the users' state make it stop loudly (exit status 70, a
message saying what to do); ``shopstream repartition`` adds partitions the supported way.
The checks run when a worker starts (Redis) or before the first batch after an assignment
(the log), so the tests give the refusing worker a record to process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from models.similarity import key_base
from streams.core.settings import Settings
from streams.kafka import committed_offsets, ensure_topics, topic_ids
from streams.worker.stopping import EXIT_STOPPED
from tests.support.chaos import profile_table
from tests.support.chaos_run import drain
from tests.support.worker import WorkerProcess, produce, settings_env

T0 = 1_709_283_600_000


def events(users: int, n: int, start: int = 0) -> list[tuple[bytes | None, bytes | None]]:
    out: list[tuple[bytes | None, bytes | None]] = []
    for i in range(start, start + n):
        uid = f"u{i % users}"
        out.append((uid.encode(), orjson.dumps({
            "event_id": f"e{i}", "type": "view", "user_id": uid, "session_id": f"s{i % users}",
            "item_id": f"i{i % 13}", "ts": T0 + i * 1000})))  # fmt: skip
    return out


async def run_until_drained(settings: Settings, total: int, log: Path) -> None:
    with WorkerProcess(settings, log) as worker:
        await asyncio.to_thread(worker.wait_healthy)
        await drain(settings, total, worker, timeout_s=120)


async def one_partition_drained(settings: Settings, n: int, log: Path) -> Settings:
    """``settings`` on one partition, after a worker applied ``n`` events of 5 users and
    stopped: the stored state that the refusals are checked against. A refusing worker
    exits without leaving the consumer group, so the next one waits for its session to
    expire: 10 s here, not the default 60 s."""
    settings = settings.with_(partitions=1, session_timeout_s=10.0)
    await ensure_topics(settings)
    await produce(settings, events(5, n))
    await run_until_drained(settings, n, log)
    return settings


def refusal(settings: Settings, log: Path) -> str:
    """Start a worker that must refuse: its exit status and log."""
    worker = WorkerProcess(settings, log).start()
    assert worker.proc is not None
    try:
        status = worker.proc.wait(120)
    except subprocess.TimeoutExpired:
        worker.stop()  # a worker that never refused must not outlive the test
        raise AssertionError(f"the worker did not stop in 120 s:\n{worker.logs()}") from None
    assert status == EXIT_STOPPED, f"exit status {status}:\n{worker.logs()}"
    return worker.full_log()


def shopstream(settings: Settings, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "streams", *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


async def n_events(settings: Settings) -> int:
    return sum(env["p"]["n_events"] for env in (await profile_table(settings)).values())


async def test_a_recreated_topic_stops_the_worker_until_accepted(
    settings: Settings, tmp_path: Path
) -> None:
    settings = await one_partition_drained(settings, 40, tmp_path / "a.log")
    old = (await topic_ids(settings, [settings.topic_events]))[settings.topic_events]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([settings.topic_events])
        # Deletion completes asynchronously (the topic leaves the metadata, the coordinator
        # drops the group's offsets of it): recreating it before that raced the deletion.
        for _ in range(60):
            gone = settings.topic_events not in await admin.list_topics()
            if gone and not await committed_offsets(settings):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("the events topic or its offsets outlived the deletion")
        await asyncio.sleep(2)
    finally:
        await admin.close()
    await ensure_topics(settings)
    await produce(settings, events(5, 10, start=40))  # offsets 0..9: below the old fences
    log = refusal(settings, tmp_path / "b.log")
    assert "was recreated" in log and "shopstream sources --accept" in log
    assert "accepted" in shopstream(settings, "sources", "--accept")
    await run_until_drained(settings, 10, tmp_path / "c.log")
    assert await n_events(settings) == 50, "records of the new topic were skipped"
    new = (await topic_ids(settings, [settings.topic_events]))[settings.topic_events]
    print(f"verified: topic recreated ({old[:8]} -> {new[:8]}): worker refused (exit "
          f"{EXIT_STOPPED}); after `sources --accept` all 10 new records applied, none skipped")


async def test_fences_ahead_of_the_log_stop_the_worker(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """Records lost on the broker look like this: the store has applied offsets the log
    no longer has."""
    settings = await one_partition_drained(settings, 30, tmp_path / "a.log")
    off = key_base(settings.redis_prefix) + "off"
    field = next(iter(await redis_client.hkeys(off)))
    await redis_client.hset(off, field, 500)  # the log ends at 30
    await produce(settings, events(5, 1, start=30))  # checked before it is processed
    log = refusal(settings, tmp_path / "b.log")
    assert "ahead of the log" in log and "applied up to offset 500, log ends at 31" in log
    print("verified: a fence at 500 with the log ending at 31 stops the worker (exit 70) "
          "before the new record is taken for a redelivery")


async def test_a_redis_that_lost_its_data_is_refused(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    settings = await one_partition_drained(settings, 30, tmp_path / "a.log")
    pattern = key_base(settings.redis_prefix) + "*"
    keys = [k async for k in redis_client.scan_iter(match=pattern, count=2000)]
    await redis_client.unlink(*keys)  # what a restart without persistence leaves
    log = refusal(settings, tmp_path / "b.log")
    assert "lost its data" in log
    print(f"verified: Redis emptied under the worker ({len(keys)} keys): restart refused")


async def test_partitions_added_without_moving_state_stop_the_worker(
    settings: Settings, tmp_path: Path
) -> None:
    settings = await one_partition_drained(settings, 20, tmp_path / "a.log")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({settings.topic_events: NewPartitions(total_count=3)})
    finally:
        await admin.close()
    await produce(settings, events(5, 3, start=20))
    log = refusal(settings, tmp_path / "b.log")
    assert "shopstream repartition" in log
    print("verified: partitions added to the events topic alone: the worker refuses")


async def test_repartition_moves_every_user_and_skips_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(partitions=1)
    await ensure_topics(settings)
    first = events(40, 400)
    await produce(settings, first)
    await run_until_drained(settings, len(first), tmp_path / "a.log")
    out = shopstream(settings, "repartition", "--partitions", "3")
    assert "1 -> 3 partitions" in out, out
    more = events(40, 400, start=400)
    grown = settings.with_(partitions=3)
    await produce(grown, more)
    await run_until_drained(grown, len(first) + len(more), tmp_path / "b.log")
    table = await profile_table(grown)
    assert len(table) == 40 and await n_events(grown) == 800, "events were skipped or doubled"
    from streams.tools.evaluate_churn import partition_of

    assert all(env["pt"] == partition_of(uid, 3) for uid, env in table.items())
    print(f"verified: {out.strip()}; afterwards every one of 800 events applied once, every "
          "user's state on its new partition")
