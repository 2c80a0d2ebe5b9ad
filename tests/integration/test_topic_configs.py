"""An erased profile leaves Kafka within a bound: the changelog's compaction deadline, the
DLQ's retention, also on topics created before (streams/kafka.py).

Before issue 16 the changelog had ``cleanup.policy=compact`` only: Kafka compacts when the
dirty ratio says so, and never the active segment, so a tombstone guaranteed nothing in
time; the DLQ had the broker's default retention.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.core.settings import Settings
from streams.kafka import changelog_topic, client_options, ensure_topics
from tests.support.worker import WorkerProcess, produce

T0 = 1_709_283_600_000


async def topic_configs(s: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    """The configs set on each topic itself (not the broker's defaults)."""
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        [resp] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    finally:
        await admin.close()
    return {r[3]: {e[0]: e[1] for e in r[4] if e[3] == 1} for r in resp.resources}


async def test_ensure_topics_sets_the_deadlines_and_keeps_other_configs(settings: Settings) -> None:
    changelog = changelog_topic(settings)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:  # as an older version created them
        await admin.create_topics([
            NewTopic(changelog, 2, 1, topic_configs={"cleanup.policy": "compact",
                                                     "retention.bytes": "123456789"}),
            NewTopic(settings.topic_dlq, 2, 1),
        ])  # fmt: skip
    finally:
        await admin.close()
    await ensure_topics(settings)
    got = await topic_configs(settings, [changelog, settings.topic_dlq])
    lag = str(settings.changelog_max_compaction_lag_ms)
    assert got[changelog] == {"cleanup.policy": "compact", "retention.bytes": "123456789",
                              "max.compaction.lag.ms": lag, "segment.ms": lag}  # fmt: skip
    assert got[settings.topic_dlq] == {"retention.ms": str(settings.dlq_retention_ms),
                                       "segment.ms": "86400000"}  # fmt: skip
    shorter = settings.with_(changelog_max_compaction_lag_ms=60_000, dlq_retention_ms=3_600_000)
    await ensure_topics(shorter)  # a changed setting reaches existing topics
    got = await topic_configs(shorter, [changelog, settings.topic_dlq])
    assert got[changelog]["max.compaction.lag.ms"] == got[changelog]["segment.ms"] == "60000"
    assert got[changelog]["retention.bytes"] == "123456789"
    assert got[settings.topic_dlq] == {"retention.ms": "3600000", "segment.ms": "3600000"}


def view(user: str, n: int) -> tuple[bytes, bytes]:
    return user.encode(), orjson.dumps({
        "event_id": f"{user}-{n}", "type": "view", "user_id": user, "session_id": f"{user}-s",
        "item_id": f"i{n % 7}", "ts": T0 + n * 1000})  # fmt: skip


async def changelog_values(s: Settings, user: str) -> list[bytes | None]:
    """Every value the changelog still holds for ``user``'s key (None: a tombstone)."""
    tp = TopicPartition(changelog_topic(s), 0)
    consumer = AIOKafkaConsumer(**client_options(s), enable_auto_commit=False)
    await consumer.start()
    out: list[bytes | None] = []
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for recs in (await consumer.getmany(tp, timeout_ms=500)).values():
                out += [r.value for r in recs if r.key and orjson.loads(r.key) == user]
    finally:
        await consumer.stop()
    return out


async def test_an_erased_profile_is_compacted_out_of_the_changelog_in_time(
    settings: Settings, tmp_path: Path
) -> None:
    """With a 2 s deadline, the erased user's profiles are gone from Kafka within seconds
    while the shop keeps writing (a segment rolls on a write; the cleaner wakes every 15 s)."""
    s = settings.with_(partitions=1, changelog_max_compaction_lag_ms=2000)
    await ensure_topics(s)
    with WorkerProcess(s, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        # no tokens: it says so at start
        assert "the HTTP API serves 127.0.0.1 only, without authentication" in worker.full_log()
        await produce(s, [view("gone", n) for n in range(20)] + [view("stays", 0)])
        for _ in range(120):
            if worker.call("GET", "/users/stays")[0] == 200:
                break
            await asyncio.sleep(0.5)
        assert len(await changelog_values(s, "gone")) >= 1
        status, _, body = worker.call("DELETE", "/users/gone")
        assert status == 200 and orjson.loads(body)["removed"]["profile"] == 1
        erased = time.monotonic()
        n = 1
        while True:
            values = await changelog_values(s, "gone")
            if values and all(v is None for v in values):
                break
            elapsed = time.monotonic() - erased
            assert elapsed < 90, f"profiles of 'gone' still in the changelog: {len(values)}"
            await produce(s, [view("stays", n)])  # the shop goes on: segments roll
            n += 1
            await asyncio.sleep(1.0)
        print(f"erased profile compacted out after {time.monotonic() - erased:.1f} s")
