"""Scale-out: two workers in one consumer group end in the same state as one worker, also
when the second one joins mid-stream.

The same input (a generated clickstream plus a few malformed records) is processed twice on
fresh topics: once by one worker, once by two worker processes sharing the partitions of one
consumer group (checked: the group has two stable members before the input is produced).
Compared afterwards:

* the Redis similarity store: a deterministic dump of every key under the run's prefix (but
  the store's bookkeeping: its epoch, topic id and partition owner tokens).
  Co-occurrence scores are stored as ``w * 2**((ts - t0) / half_life)`` where ``t0`` is the
  first event time the store saw (which differs with the partition that happened to be
  processed first), so scores are compared after scaling by ``2**((t0 - ref) / half_life)``;
* the profile table: the last changelog value of every user (byte for byte, minus the
  model-dependent segment and churn track, with each fence named by its partition only);
* the outputs: the trigger events of the recommendations (batch size 1, so every trigger
  event gets one) and the DLQ records with their reasons;
* with two workers sharing the partitions from the start: the churn alerts, the RFM
  segments and the churn tracks too. The models are per source partition
  (models/bundle.py), each learning from its own partition in Kafka's order, so
  they do not depend on which worker holds the partition. (Before, one model per process
  learned from whatever partitions it held: alerts changed with the assignment.)

When a worker joins mid-stream, the partitions that move take their models with them (the
old owner stores them in Redis at revocation, after its last batch; the new owner takes
them before its first batch), so the joining run is compared on all of the above too.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from models.similarity import delete_prefix, key_base
from streams.core.settings import Settings
from streams.kafka import client_options, ensure_topics, group_members
from streams.tools.generate import generate
from tests.support.chaos import BOOKKEEPING
from tests.support.worker import WorkerProcess, committed, free_port, produce, secret

DAY_MS = 86_400_000
BAD = [b"not json at all", b"[1, 2]", b"\xff\xfe\xfd", b'{"event_id": 5, "type": "view"}']


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_settings(base: Settings, tmp: Path, name: str) -> Settings:
    tag = f"{name}{uuid.uuid4().hex[:8]}"
    return base.namespaced(f"t{tag}").with_(
        data_dir=str(tmp / tag),
        partitions=4,
        batch_size=1,
        batch_within_ms=5,
        commit_interval_s=0.5,
        churn_min_labels=20,  # small input: the learned model's warm-up and guard
        churn_min_customers=3,  # ... and the analytic scorer's fit, so every partition alerts
        idle_advance_s=0.0,  # event time only: the same outcome however long a run takes
        churn_alert_max_age_days=0.0,  # generated 2024 history: publish its alerts
        checkpoint_key=secret("scale-out"),  # signs the models handed over at a rebalance
    )


def records() -> tuple[list[tuple[bytes | None, bytes | None]], int]:
    """The input records and the earliest event time (the reference of the scores)."""
    events, _ = generate(users=24, seed=11, days=90)
    out: list[tuple[bytes | None, bytes | None]] = [
        (e["user_id"].encode(), orjson.dumps(e)) for e in events
    ]
    for i, bad in enumerate(BAD):
        out.insert(1 + i * len(out) // len(BAD), (f"u-bad{i}".encode(), bad))
    return out, min(int(e["ts"]) for e in events)


async def group_lag(s: Settings, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> int:
    offsets = await admin.list_consumer_group_offsets(s.app_id)
    committed = {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == s.topic_events}
    parts = [TopicPartition(s.topic_events, p) for p in range(s.partitions)]
    ends = await consumer.end_offsets(parts)
    return sum(ends[tp] - max(0, committed.get(tp.partition, 0)) for tp in parts)


async def wait_drained(s: Settings, deadline_s: float) -> None:
    admin = AIOKafkaAdminClient(**client_options(s))
    consumer = AIOKafkaConsumer(**client_options(s))
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if await group_lag(s, admin, consumer) == 0:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{s.app_id} did not drain {s.topic_events} in {deadline_s}s")
    finally:
        await consumer.stop()
        await admin.close()


async def wait_members(s: Settings, want: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while await group_members(s, stable=True) != want:
        if time.monotonic() >= deadline:
            raise AssertionError(f"group {s.app_id} never had {want} stable members")
        await asyncio.sleep(0.5)


async def read_all(s: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` (all partitions) up to its current end."""
    consumer = AIOKafkaConsumer(**client_options(s), enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        parts = [TopicPartition(topic, p) for p in range(s.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        behind = [tp for tp in parts if ends[tp] > 0]
        deadline = time.monotonic() + 30
        while behind and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(recs)
            behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
        assert not behind, f"could not read {topic} to its end"
    finally:
        await consumer.stop()
    return out


async def redis_dump(s: Settings, ref_ms: int) -> dict[str, Any]:
    """Every key under the prefix, typed and normalised (see the module docstring)."""
    client = aioredis.from_url(s.redis_url)
    base = key_base(s.redis_prefix)
    hl_ms = s.rec_half_life_days * DAY_MS
    dump: dict[str, Any] = {}
    source = re.escape(s.topic_events) + "(@[0-9a-f]{12})?"
    try:
        meta = await client.hgetall(base + "meta")
        t0 = float(meta[b"t0"])
        scale = 2 ** ((t0 - ref_ms) / hl_ms)
        pattern = base.replace("{", "\\{").replace("}", "\\}") + "*"
        async for raw in client.scan_iter(match=pattern, count=1000):
            key = text(raw)[len(base) :]
            if key.startswith(("pm:", "undo:", "fc:")):
                continue  # partition models stored and the envelopes kept to go back to
                # them (streams.worker.undo): compared by effect; the forecasts'
                # bookkeeping: sent when a timer fires, wall times
            if key in BOOKKEEPING:
                continue  # store epoch, topic id, owner tokens: differ by run and by workers
            kind = text(await client.type(raw))
            if kind == "zset":
                rows: Any = await client.zrange(raw, 0, -1, withscores=True)
                dump[key] = {text(m): float(score) * scale for m, score in rows}
            elif kind == "hash":
                fields = (await client.hgetall(raw)).items()
                # the offsets hash names the (run-specific) topic and its id:
                # "<topic>@<topic id>:<partition>"
                dump[key] = {re.sub(source, "<events>", text(k)): text(v) for k, v in fields}
                if key == "meta":
                    dump[key].pop("t0")
            elif kind == "set":
                dump[key] = sorted(text(m) for m in await client.smembers(raw))
            else:
                dump[key] = text(await client.get(raw) or b"")
    finally:
        await client.aclose()
    return dump


def assert_same_store(one: dict[str, Any], two: dict[str, Any]) -> None:
    assert sorted(one) == sorted(two), set(one) ^ set(two)
    for key, value in one.items():
        other = two[key]
        if key.startswith(("n:", "pop")):
            assert sorted(value) == sorted(other), key
            for member, score in value.items():
                assert math.isclose(score, other[member], rel_tol=1e-9), (key, member)
        else:
            assert value == other, key


#: Envelope fields computed by the partition's models, which a worker taking the partition
#: over mid-stream starts afresh: the RFM segment, and the churn track, which records whether
#: an idle episode was scored above the alert threshold.
MODEL_FIELDS = ("sg", "t")
#: Envelope fields in Kafka record time (when each run's records were produced): the
#: rate-limit window.
RUN_FIELDS = ("rt",)


def without_model_fields(value: bytes) -> bytes:
    """The profile envelope minus the fields that depend on the process-local models (and
    on when the run's records were produced)."""
    env = orjson.loads(value)
    for name in (*MODEL_FIELDS, *RUN_FIELDS):
        env.pop(name, None)
    # fences name their source "<topic id prefix>:<partition>": the id differs by run
    env["f"] = {k.rpartition(":")[2]: v for k, v in env.get("f", {}).items()}
    return orjson.dumps(env, option=orjson.OPT_SORT_KEYS)


async def outcome(s: Settings, ref_ms: int) -> dict[str, Any]:
    recs = await read_all(s, s.topic_recommendations)
    alerts = await read_all(s, s.topic_churn_alerts)
    dlq = await read_all(s, s.topic_dlq)
    changelog = await read_all(s, f"{s.app_id}-profiles-changelog")
    profiles: dict[bytes, bytes] = {}
    for rec in sorted(changelog, key=lambda r: (r.partition, r.offset)):
        profiles[rec.key] = rec.value
    per_user = {k: without_model_fields(v) for k, v in profiles.items()}
    reasons = {
        (rec.value, text(dict(rec.headers)["reason"])) for rec in dlq
    }  # a set: redelivery after a rebalance may repeat a record
    store = await redis_dump(s, ref_ms)
    # ``alerted:<id>`` keys de-duplicate churn alerts: they follow the (model-dependent) alerts
    alerted = {k for k in store if k.startswith("alerted:")}
    return {
        "store": {k: v for k, v in store.items() if k not in alerted},
        "alerted": alerted,
        "profiles": per_user,
        "segments": {k: orjson.loads(v).get("sg") for k, v in profiles.items()},
        "tracks": {k: orjson.loads(v).get("t") for k, v in profiles.items()},
        "rec_triggers": {orjson.loads(r.value)["trigger_event_id"] for r in recs},
        "alerts": {orjson.loads(r.value)["alert_id"] for r in alerts},
        "dlq": reasons,
    }


async def cleanup(s: Settings) -> None:
    client = aioredis.from_url(s.redis_url)
    try:
        await delete_prefix(client, key_base(s.redis_prefix))
    finally:
        await client.aclose()


Outcomes = tuple[
    dict[str, Any], dict[str, Any], list[tuple[bytes | None, bytes | None]], dict[str, Any]
]


async def committed_share(s: Settings, total: int) -> float:
    return await committed(s) / max(total, 1)


@pytest.fixture(scope="module")
async def outcomes(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    """Run the input through one worker, through two, and through one that a second worker
    joins mid-stream (a rebalance while records are in flight); the tests read the results."""
    tmp = tmp_path_factory.mktemp("scale-out")
    base = Settings(
        kafka_bootstrap=os.environ["SHOPSTREAM_TEST_KAFKA"],
        redis_url=os.environ["SHOPSTREAM_TEST_REDIS_URL"],
        log_level="info",
        max_events_per_min=0,  # history produced in seconds (tests/conftest.py)
    )
    data, ref_ms = records()
    results: dict[str, dict[str, Any]] = {}
    for name, n_workers in (("one", 1), ("two", 2), ("join", 2)):
        s = run_settings(base, tmp, name)
        await ensure_topics(s)
        workers = [
            WorkerProcess(
                s.with_(web_port=free_port(), data_dir=f"{s.data_dir}-{i}"),
                tmp / f"{name}-{i}.log",
            )
            for i in range(n_workers)
        ]
        late = workers[1:] if name == "join" else []
        try:
            for w in workers:
                if w not in late:
                    w.start()
            for w in workers:
                if w not in late:
                    await asyncio.to_thread(w.wait_healthy, 60.0)
            await wait_members(s, n_workers - len(late), 45.0)
            if not late:
                await produce(s, data)
            else:  # a fifth first; then a steady trickle until the second worker has joined
                head = len(data) // 5
                await produce(s, data[:head])
                deadline = time.monotonic() + 45
                while await committed_share(s, len(data)) < 0.1:
                    assert time.monotonic() < deadline, "first worker made no progress"
                    await asyncio.sleep(0.2)
                for w in late:
                    w.start()
                sent = head
                while await group_members(s, stable=True) != n_workers:
                    assert time.monotonic() < deadline + 45, "second worker never joined"
                    await produce(s, data[sent : sent + 10])
                    sent += 10
                    await asyncio.sleep(0.2)
                results["join"] = {"share_at_join": await committed_share(s, len(data))}
                await produce(s, data[sent:])
            await wait_drained(s, 60.0)
            await asyncio.sleep(1.5)  # the last batch's outputs and changelog writes
            assert all(w.alive() for w in workers), [w.logs() for w in workers]
            results.setdefault(name, {}).update(await outcome(s, ref_ms))
            logs = "".join(w.full_log() for w in workers)
            results[name]["watchdog_repairs"] = logs.count("offset commits stalled")
            results[name]["skipped"] = logs.count("records skipped by the consumer")
            results[name]["took_over"] = logs.count("took over the models")
        finally:
            for w in workers:
                w.stop()
            await cleanup(s)
    return results["one"], results["two"], data, results["join"]


def test_two_workers_same_state_as_one(outcomes: Outcomes) -> None:
    """Everything that depends only on each user's own events and on the shared Redis store."""
    one, two, data, _ = outcomes
    n_valid = len(data) - len(BAD)
    users = {orjson.loads(v)["user_id"] for k, v in data if v and k and not k.startswith(b"u-bad")}
    assert len(one["profiles"]) == len(users)
    assert len(one["rec_triggers"]) > n_valid // 3
    assert {r for _, r in one["dlq"]} >= {"not_json", "not_object", "bad_utf8"}
    assert one["skipped"] == two["skipped"] == 0
    assert_same_store(one["store"], two["store"])
    differing = {
        key.decode(): sorted(
            f
            for f in set(orjson.loads(v)) | set(orjson.loads(two["profiles"].get(key, b"{}")))
            if orjson.loads(v).get(f) != orjson.loads(two["profiles"].get(key, b"{}")).get(f)
        )
        for key, v in one["profiles"].items()
        if v != two["profiles"].get(key)
    }
    assert not differing, differing  # user -> envelope fields that differ
    assert one["profiles"].keys() == two["profiles"].keys()
    assert one["rec_triggers"] == two["rec_triggers"]
    assert one["dlq"] == two["dlq"]


def test_two_workers_same_alerts_and_segments_as_one(outcomes: Outcomes) -> None:
    one, two, _, _ = outcomes
    assert one["alerts"], "the input must produce churn alerts for this test to mean anything"
    assert one["alerts"] == two["alerts"]
    assert one["segments"] == two["segments"]
    assert one["tracks"] == two["tracks"]
    assert one["alerted"] == two["alerted"]
    segmented = sum(v is not None for v in one["segments"].values())
    print(f"verified: {len(one['alerts'])} churn alerts, {segmented} segments equal")


def test_a_worker_joining_mid_stream_changes_nothing(outcomes: Outcomes) -> None:
    """A rebalance while records are in flight (partitions move to the new worker, whose
    profiles come from the changelog, whose models come from the old owner through Redis and
    whose redelivered records are fenced) ends in the same store, profiles, recommendation
    triggers, DLQ, churn alerts and segments as one worker."""
    one, _, _, join = outcomes
    print(f"second worker joined at {join['share_at_join']:.0%} committed")
    assert join["share_at_join"] < 0.95, "the join must happen while records are in flight"
    # Before streams/patches/recovery.py, records fetched during the end-of-rebalance seek were
    # dropped: in ~2 of 7 runs effects went missing, in others commits stalled. Faust can
    # still drop a record at a rebalance now and then; since streams/patches/order.py the
    # worker re-reads it (logged as "records skipped by the consumer") instead of moving its
    # fences and the commit past it (a CI run lost a whole session and a day's figures so).
    print(f"records re-read after the consumer skipped them: {join['skipped']} time(s)")
    assert join["watchdog_repairs"] == 0, "offset commits stalled after the rebalance"
    assert_same_store(one["store"], join["store"])
    assert one["profiles"] == join["profiles"]
    assert one["rec_triggers"] == join["rec_triggers"]
    assert one["dlq"] == join["dlq"]
    # The moved partitions' models went with them (models/bundle.py: Handover).
    assert join["took_over"] > 0, "the joining worker never took over stored models"
    assert one["alerts"] == join["alerts"]
    assert one["segments"] == join["segments"]
    assert one["tracks"] == join["tracks"]
    assert one["alerted"] == join["alerted"]
