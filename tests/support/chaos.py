"""Helpers of the fault-injection suite: workloads, private services, state dumps, verdicts.

Everything here stops only what it started (by pid), binds to 127.0.0.1, and is bounded in
time. The comparisons are exact: a run disturbed by faults must leave the same Redis
similarity state and the same profile table as a clean run of the same events.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from models.checkpoint import SUFFIX, load_checkpoint
from models.similarity import key_base
from streams.core.settings import Settings
from streams.kafka import committed_offsets, ensure_topics
from streams.tools.generate import generate
from tests.support.outputs import Outputs, compare_outputs, read_outputs
from tests.support.worker import free_port

ROOT = Path(__file__).resolve().parents[2]
Records = list[tuple[bytes, bytes]]
#: Keys of the store's own bookkeeping (streams/worker/sources.py, runtime.py).
BOOKKEEPING = frozenset({"epoch", "sources", "owners", "owner-seq"})
#: the uplift tally of churn alerts: which alerts there are depends on the churn model,
#: learned at most once across a crash (like the alerts topic, compared on its own)
ALERT_TALLY = frozenset({"kpi:alerts", "kpi:alert-of", "kpi:returned", "kpi:outcomes"})


def say(line: str) -> None:
    """What a test verified, printed so that a reader of the run can trust it."""
    print(f"verified: {line}", flush=True)


def note(line: str) -> None:
    print(f"  chaos: {line}", flush=True)


def sibling(settings: Settings, tag: str, **changes: Any) -> Settings:
    """The same settings with their own topics, group, prefix, port and data dir."""
    return settings.with_(
        app_id=f"{settings.app_id}-{tag}",
        redis_prefix=f"{settings.redis_prefix}{tag}",
        web_port=free_port(),
        data_dir=f"{settings.data_dir}-{tag}",
        **{
            name: f"{getattr(settings, name)}-{tag}"
            for name in (
                "topic_events", "topic_dlq", "topic_recommendations", "topic_churn_alerts",
                "topic_segments", "topic_anomalies",
            )
        },
        **changes,
    )  # fmt: skip


# --- workloads --------------------------------------------------------------------------
def workload(users: int, seed: int, days: int = 120, bots: int = 0, whole: int = 500) -> Records:
    """Generated contract events as (key, value) records, keyed by user id; ``bots``
    scrapers among them (flagged, kept out of learning: issue 15, hole 6). The latest events
    are left out so that the count is a multiple of ``whole`` (the chaos runs' batch size):
    a run of full batches then never waits for a last, short one."""
    events, _ = generate(users=users, seed=seed, days=days, bots=bots)
    events = events[: len(events) // whole * whole]
    return [(e["user_id"].encode(), orjson.dumps(e)) for e in events]


async def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Send everything (acks=all), as fast as the producer batches allow."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def prepare(runs: list[Settings], records: Records) -> None:
    """Create the topics of each run and produce all of ``records`` to its events topic."""
    for s in runs:
        await ensure_topics(s)
        await produce(s.kafka_bootstrap, s.topic_events, list(records))


# --- Kafka reads ------------------------------------------------------------------------
async def committed_total(settings: Settings) -> int:
    try:
        return sum((await committed_offsets(settings)).values())
    except Exception:
        return -1


async def past(settings: Settings, n: int) -> bool:
    """Whether the worker's group has committed at least ``n`` records."""
    return await committed_total(settings) >= n


async def read_all(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = 120.0
) -> list[Any]:
    """Every record of ``topic`` (``partitions`` partitions) up to its current end offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[Any] = []
    try:
        parts = range(partitions)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            batch = await consumer.getmany(*todo, timeout_ms=500, max_records=20000)
            for tp, records in batch.items():
                out.extend(records)
                if records and records[-1].offset >= ends[tp] - 1:
                    todo.discard(tp)
        assert not todo, f"{topic}: could not read to the end in {timeout_s}s"
    finally:
        await asyncio.shield(consumer.stop())
    return out


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-profiles-changelog"


async def profile_table(settings: Settings) -> dict[str, dict[str, Any]]:
    """The profile table as its changelog holds it: last envelope per user, read with the
    worker's own recovery rule (``streams.patches.table.keep``: a user moved by
    ``shopstream repartition`` has a newer envelope in one partition and a tombstone in
    another, read in any order)."""
    from types import SimpleNamespace

    from streams.patches.table import keep

    raw: dict[str, bytes] = {}
    for rec in await read_all(
        settings.kafka_bootstrap, changelog_topic(settings), settings.partitions
    ):
        key = orjson.loads(rec.key)
        event = SimpleNamespace(message=rec)  # .value and .partition, as Faust's event has
        if not keep(raw.get(key), event):
            continue
        if rec.value is None:
            raw.pop(key, None)
        else:
            raw[key] = rec.value
    return {k: orjson.loads(v) for k, v in raw.items()}


async def alert_ids(settings: Settings) -> list[str]:
    recs = await read_all(
        settings.kafka_bootstrap, settings.topic_churn_alerts, settings.partitions
    )
    return [orjson.loads(r.value)["alert_id"] for r in recs]


# --- Redis reads ------------------------------------------------------------------------
#: key prefixes that are not similarity state (see :func:`redis_state`)
SKIPPED = ("alerted:", "pm:", "undo:", "fc:")


async def redis_state(url: str, settings: Settings) -> dict[str, Any]:
    """Every similarity and business-figure key under the prefix, type-aware, with prefix
    and topic names stripped.

    Alert de-duplication markers (``alerted:*``), the forecasts' bookkeeping (``fc:*``),
    the alerts' uplift tally
    (:data:`ALERT_TALLY`), handed-over partition models (``pm:*``) and the envelopes kept to
    go back to them (``undo:*``, streams.worker.undo), and the store's
    bookkeeping (its epoch, the topic id it was built from, partition owner tokens) are not
    similarity state and are left out; TTLs are wall-clock and are left out too. Values are
    compared exactly; a fence names its source ``topic@<topic id>``, which differs between
    runs: it becomes ``<events>``.
    """
    base = key_base(settings.redis_prefix)
    topic = re.escape(settings.topic_events.encode())

    def norm(b: bytes) -> bytes:
        return re.sub(topic + rb"(@[0-9a-f]{12})?", b"<events>", b)

    client = aioredis.from_url(url)
    state: dict[str, Any] = {}
    try:
        keys = [k async for k in client.scan_iter(match=base + "*", count=2000)]
        for raw in keys:
            name = raw.decode()[len(base) :]
            if name.startswith(SKIPPED) or name in BOOKKEEPING | ALERT_TALLY:
                continue  # pm: partition models handed over (learning is at most once);
                # fc: forecasts sent (when depends on timers) and wall times of partitions
            kind = (await client.type(raw)).decode()
            if kind == "string":
                value: Any = await client.get(raw)
            elif kind == "hash":
                value = sorted((norm(k), v) for k, v in (await client.hgetall(raw)).items())
            elif kind == "zset":
                value = sorted(await client.zrange(raw, 0, -1, withscores=True))
            elif kind == "set":
                value = sorted(await client.smembers(raw))
            elif kind == "list":
                value = await client.lrange(raw, 0, -1)
            else:
                continue  # expired between SCAN and TYPE
            state[name] = (kind, value)
    finally:
        await client.aclose()
    return state


async def alert_markers(url: str, settings: Settings) -> set[str]:
    """Alert ids the worker marked as published (its de-duplication keys in Redis)."""
    client = aioredis.from_url(url)
    pattern = key_base(settings.redis_prefix) + "alerted:*"
    try:
        keys = client.scan_iter(match=pattern, count=2000)
        return {k.decode().rsplit("alerted:", 1)[1] async for k in keys}
    finally:
        await client.aclose()


async def drop_prefix(url: str, settings: Settings) -> None:
    client = aioredis.from_url(url)
    try:
        pattern = key_base(settings.redis_prefix) + "*"
        keys = [k async for k in client.scan_iter(match=pattern, count=2000)]
        for i in range(0, len(keys), 1000):
            await client.unlink(*keys[i : i + 1000])
    finally:
        await client.aclose()


# --- verdicts ---------------------------------------------------------------------------
@dataclass
class Outcome:
    redis: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    alerts: list[str]
    marked: set[str]
    outputs: Outputs


async def outcome(settings: Settings) -> Outcome:
    outputs = await read_outputs(settings)
    return Outcome(
        await redis_state(settings.redis_url, settings),
        await profile_table(settings),
        outputs.alerts,
        await alert_markers(settings.redis_url, settings),
        outputs,
    )


def duplicates(ids: list[str]) -> int:
    return sum(c - 1 for c in Counter(ids).values())


def value_diff(key: str, clean: Any, disturbed: Any) -> str:
    """What differs in one Redis value, in a few hundred characters: the differing fields
    of a hash or sorted set (clean -> disturbed), else both values.

    >>> value_diff("k", ("hash", [(b"a", b"1"), (b"b", b"2")]), ("hash", [(b"a", b"1")]))
    "k: {b'b': (b'2', None)}"
    """
    (kind, a), (_, b) = clean, disturbed
    if kind in ("hash", "zset") and isinstance(a, list) and isinstance(b, list):
        da, db = dict(a), dict(b)
        fields = sorted(set(da) | set(db), key=repr)
        changed = {f: (da.get(f), db.get(f)) for f in fields if da.get(f) != db.get(f)}
        return f"{key}: {changed}"[:400]
    return f"{key}: {clean!r} -> {disturbed!r}"[:400]


def compare(
    clean: Outcome, disturbed: Outcome, n_events: int, *, models_exact: bool,
    replayed: bool = False, interrupted_ms: Sequence[int] = (),
) -> str:  # fmt: skip
    """Assert the disturbed run equals the clean one — state (Redis, profiles) and what the
    storefront sees (:func:`tests.support.outputs.compare_outputs`; ``models_exact``: no
    model state was lost, so model-derived outputs must be equal too; ``replayed``: the input
    was processed again from its start, ``shopstream reset``, so alerts may repeat too;
    ``interrupted_ms``: when a worker was killed or frozen, see
    :func:`~tests.support.outputs.compare_outputs`);
    return the verified line."""
    rk, dk = set(clean.redis), set(disturbed.redis)
    assert rk == dk, (
        f"redis keys differ: missing {sorted(rk - dk)[:5]}, extra {sorted(dk - rk)[:5]}"
    )
    diff = sorted(k for k in clean.redis if clean.redis[k] != disturbed.redis[k])
    assert not diff, f"{len(diff)} redis keys differ ({diff[:8]}): " + "; ".join(
        value_diff(k, clean.redis[k], disturbed.redis[k]) for k in diff[:4]
    )
    assert set(clean.profiles) == set(disturbed.profiles), "profile table users differ"
    bad = [u for u in clean.profiles if clean.profiles[u]["p"] != disturbed.profiles[u]["p"]]
    assert not bad, (
        f"{len(bad)} profiles differ, e.g. {bad[0]}: "
        + repr((clean.profiles[bad[0]]["p"], disturbed.profiles[bad[0]]["p"]))[:600]
    )
    fences = [u for u in clean.profiles if clean.profiles[u]["o"] != disturbed.profiles[u]["o"]]
    assert not fences, f"{len(fences)} profile offset fences differ, e.g. {fences[:3]}"
    n_applied = sum(env["p"]["n_events"] for env in disturbed.profiles.values())
    assert n_applied == n_events, f"profiles count {n_applied} events, {n_events} were sent"
    seen = compare_outputs(
        clean.outputs, disturbed.outputs, disturbed.marked, models_exact=models_exact,
        replayed=replayed, interrupted_ms=interrupted_ms,
    )  # fmt: skip
    return (
        f"{n_events} events, redis keys equal ({len(rk)} keys), "
        f"profiles equal ({len(clean.profiles)} users, {n_applied} events applied); {seen}"
    )


def profile_event_count(profiles: dict[str, dict[str, Any]]) -> int:
    return sum(env["p"]["n_events"] for env in profiles.values())


# --- checkpoints ------------------------------------------------------------------------
def checkpoint_offsets(settings: Settings) -> list[tuple[str, dict[str, int]]]:
    """(file, meta offsets) of every checkpoint that verifies with the key."""
    out = []
    directory = Path(settings.data_dir) / "checkpoints"
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        _, meta = load_checkpoint(path, settings.checkpoint_key.encode())
        out.append((path.name, dict(meta.get("offsets", {}))))
    return out


async def check_checkpoints(settings: Settings) -> tuple[int, int]:
    """With the worker dead: no checkpoint claims an offset beyond the durable state.

    Durable = the committed offset (exclusive) or, higher, the offset fence of the profiles
    in the changelog (effects already written). Returns (checkpoints, offsets checked).
    """
    committed = await committed_offsets(settings)
    fence: dict[int, int] = {}
    for env in (await profile_table(settings)).values():
        fence[env["pt"]] = max(fence.get(env["pt"], -1), env["o"])
    n = 0
    ckpts = checkpoint_offsets(settings)
    for name, offsets in ckpts:
        for key, off in offsets.items():
            topic, _, part = key.rpartition(":")
            assert topic == settings.topic_events, f"{name}: unexpected source {key}"
            durable = max(committed.get(int(part), 0) - 1, fence.get(int(part), -1))
            assert off <= durable, (
                f"checkpoint {name} claims {key}@{off} but only {durable} is durable "
                f"(committed {committed}, changelog fence {fence})"
            )
            n += 1
    return len(ckpts), n
