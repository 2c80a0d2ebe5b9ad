"""Issue 16: events of a forgotten user that Kafka delivers again stay forgotten.

The real worker applies a user's events, the user is forgotten, the worker is stopped and its
group's committed offsets are set back to the start (as an operator's reset, or a batch that
was processed but not committed before a crash), and the worker starts again: every record is
delivered again. Judged by what a consumer of the output topics sees, the table and Redis.

Before the erasure fence (``forget`` deleted the envelope, the only per-user fence) the
redelivered events were fresh events of a new user: the profile came back, and so did a
recommendation for the redelivered trigger and the rejected record in the DLQ.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from models.similarity import key_base
from streams.core.settings import Settings
from streams.kafka import committed_offsets, ensure_topics
from tests.support.chaos import read_all
from tests.support.worker import (
    WorkerProcess,
    committed,
    consume,
    produce,
    settings_env,
)

T0 = 1_709_283_600_000  # 2024-03-01T09:00:00Z
GONE = "gone-user"


def event(user: str, n: int, item: str, etype: str = "view") -> bytes:
    return orjson.dumps({"event_id": f"{user}-{n}", "type": etype, "user_id": user,
                         "session_id": f"{user}-s", "item_id": item, "price": 5.0,
                         "ts": T0 + n * 1000})  # fmt: skip


def outputs_of(records: list[Any], user: str) -> list[bytes]:
    """The records of one output topic that are about ``user`` (key or ``user_id``)."""
    mine = []
    for r in records:
        try:
            about = orjson.loads(r.value).get("user_id")
        except orjson.JSONDecodeError:  # a dead letter: the original bytes
            about = None
        if r.key == user.encode() or about == user:
            mine.append(r.value)
    return mine


async def everything_about(settings: Settings, user: str) -> dict[str, list[bytes]]:
    """What a consumer of each output topic has seen about ``user``: every record up to the
    topic's log end. Called once the worker committed every input record, and the worker
    flushes its producer before it commits, so every output of those records is there."""
    s = settings
    topics = [s.topic_recommendations, s.topic_churn_alerts, s.topic_segments,
              s.topic_anomalies, s.topic_dlq]  # fmt: skip
    out = {}
    for topic in topics:
        records = await read_all(s.kafka_bootstrap, topic, s.partitions, timeout_s=60)
        out[topic] = outputs_of(records, user)
    return out


async def wait_committed(
    settings: Settings, n: int, worker: WorkerProcess, before: WorkerProcess | None = None
) -> None:
    """Until the group committed ``n`` records. On a timeout the message has the stack of
    every task of the worker (a CI run once saw a restarted worker process nothing for 90 s)
    and how the worker ``before`` it ended (killed after the stop timeout: it never left the
    group, and the broker waits for it for the session timeout before it assigns)."""
    deadline = time.monotonic() + 90
    while await committed(settings) < n:
        if time.monotonic() > deadline:
            ended = before.proc.returncode if before and before.proc else None
            raise AssertionError(f"not all {n} records committed (the worker before ended "
                                 f"with {ended})\n{worker.stuck_report()}")  # fmt: skip
        assert worker.alive(), worker.logs()
        await asyncio.sleep(0.3)


async def set_group_back(settings: Settings) -> None:
    """Commit offset 0 on every partition of the events topic for the (stopped) group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.app_id, enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_events, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.commit(dict.fromkeys(tps, 0))
    finally:
        await consumer.stop()


async def redis_keys_about(settings: Settings, user: str) -> list[bytes]:
    client = aioredis.from_url(settings.redis_url)
    try:
        base = key_base(settings.redis_prefix)
        # count: SCAN's default (10 keys a call) takes ~10 s on a Redis of 300k keys
        keys = client.scan_iter(match=base + "*", count=2000)
        return [k async for k in keys if user.encode() in k]
    finally:
        await client.aclose()


async def erasure_fences(settings: Settings) -> dict[str, dict[bytes, float]]:
    """The erasure fences in Redis: ``incarnation:partition`` -> {user digest: offset}."""
    client = aioredis.from_url(settings.redis_url)
    base = key_base(settings.redis_prefix) + "erased:"
    try:
        return {k.decode().removeprefix(base): dict(await client.zrange(k, 0, -1, withscores=True))
                async for k in client.scan_iter(match=base + "*", count=2000)}  # fmt: skip
    finally:
        await client.aclose()


def dropped(worker: WorkerProcess, kind: str) -> float:
    """``shopstream_erased_dropped_total{kind}`` of the worker."""
    metrics = worker.call("GET", "/metrics")[2].decode()
    found = re.search(rf'^shopstream_erased_dropped_total{{kind="{kind}"}} (\S+)$', metrics, re.M)
    assert found, metrics[-3000:]
    return float(found.group(1))


def trigger_ids(values: list[bytes]) -> set[str]:
    return {orjson.loads(v)["trigger_event_id"] for v in values}


async def test_redelivered_events_of_a_forgotten_user_stay_forgotten_until_they_come_back(
    settings: Settings, tmp_path: Path
) -> None:
    # a worker that does not leave the group cleanly holds its partitions this long
    settings = settings.with_(session_timeout_s=10.0)
    await ensure_topics(settings)
    others = [(f"o{u}".encode(), event(f"o{u}", n, item))
              for u in range(6) for n, item in enumerate(["a", "b", "c"])]  # fmt: skip
    gone = [
        (GONE.encode(), event(GONE, n, item, t))
        for n, (t, item) in enumerate([("view", "a"), ("view", "b"), ("purchase", "b")])
    ]
    bad = [(GONE.encode(), b'{"event_id": "gone-x", "type": "view", oops')]  # a dead letter
    records = [*others, *gone, *bad]
    log = tmp_path / "worker.log"
    with WorkerProcess(settings, log) as first:
        first.wait_healthy()
        await produce(settings, records)
        await wait_committed(settings, len(records), first)
        worker = first
        assert worker.call("GET", f"/users/{GONE}")[0] == 200, worker.logs()
        before = await everything_about(settings, GONE)
        assert before[settings.topic_recommendations], "the user had recommendations"
        assert len(before[settings.topic_dlq]) == 1, before
        assert await redis_keys_about(settings, GONE)

        status, _, body = worker.call("DELETE", f"/users/{GONE}")
        assert status == 200, body
        removed = orjson.loads(body)["removed"]
        assert removed["profile"] == 1, removed
    assert not await redis_keys_about(settings, GONE)
    # the fence is the log end of the user's partition at the erasure (lag was 0 here)
    ends = await committed_offsets(settings)
    ((source, fence),) = (await erasure_fences(settings)).items()
    assert "gone-user" not in str(fence) and list(fence.values()) == [
        ends[int(source.rsplit(":", 1)[1])] - 1
    ]

    await set_group_back(settings)  # every record is delivered again
    assert await committed(settings) == 0
    with WorkerProcess(settings, log) as worker:
        worker.wait_healthy()
        await wait_committed(settings, len(records), worker, before=first)
        status, _, body = worker.call("GET", f"/users/{GONE}")
        assert status == 404, f"the forgotten user came back: {body!r}\n{worker.logs()}"
        assert not await redis_keys_about(settings, GONE)
        after = await everything_about(settings, GONE)
        assert after == before, "outputs about the forgotten user were published again"
        # (at least: a worker under load may seek back and get records once more)
        assert dropped(worker, "event") >= 3 and dropped(worker, "rejected") >= 1

        # the user comes back after the erasure: a new event is applied as a new user's
        back = event(GONE, 10, "c")
        await produce(settings, [(GONE.encode(), back)])
        await wait_committed(settings, len(records) + 1, worker)
        status, _, body = worker.call("GET", f"/users/{GONE}")
        assert status == 200, body
        assert orjson.loads(body)["profile"]["n_events"] == 1, body
        recs = await consume(settings.topic_recommendations, settings,
                             done=lambda out: any(orjson.loads(r.value)["trigger_event_id"]
                                                  == f"{GONE}-10" for r in out))  # fmt: skip
        assert any(orjson.loads(r.value)["trigger_event_id"] == f"{GONE}-10" for r in recs)
    assert removed.get("erasure_fences") == 1, removed  # the user's one partition

    # `shopstream reset` replays the whole topic: the fence is kept, so only the event after
    # the erasure is the user's again
    cli = subprocess.run([sys.executable, "-m", "streams", "reset", "--yes"],
                         env=settings_env(settings), capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert cli.returncode == 0 and "erasure fences of 1 forgotten users kept" in cli.stdout, (
        cli.stdout + cli.stderr
    )
    second = worker
    with WorkerProcess(settings, log) as worker:
        worker.wait_healthy()
        await wait_committed(settings, len(records) + 1, worker, before=second)
        status, _, body = worker.call("GET", f"/users/{GONE}")
        assert status == 200 and orjson.loads(body)["profile"]["n_events"] == 1, body
        recs = (await everything_about(settings, GONE))[settings.topic_recommendations]
        assert trigger_ids(recs) == trigger_ids(before[settings.topic_recommendations]) | {
            f"{GONE}-10"
        }
