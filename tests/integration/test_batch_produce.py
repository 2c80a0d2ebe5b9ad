"""The hot path of issue 20 changes no byte of what consumers and a restart see.

The same input, run by the real worker once as before issue 20 (one Faust send per record,
``SHOPSTREAM_BATCH_PRODUCE=0``; envelopes decoded in every batch,
``SHOPSTREAM_LIVE_ENVELOPES=0``) and once with a producer batch per (topic, partition) and
live envelopes: every output topic must hold the same records (partition, order, key,
value, headers; only the Kafka timestamps may differ), and the profile changelog the same
last envelope per user (the fast run skips envelopes that did not change, so it writes
fewer records; the envelopes' fence keys name the input topic and are compared by
partition). A third run hands the input to the agent a partition fetch at a time
(``SHOPSTREAM_FETCH_HANDOFF``, streams/patches/handoff.py) and must match too. One partition
and full batches, as in the fault suite, so all runs cut the same batches
(tests/support/outputs.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.patches.produce import send_batches
from tests.support.chaos import changelog_topic, produce, read_all, say, sibling, workload
from tests.support.chaos_run import run_clean

BATCH = 500
OUTPUTS = (
    "topic_dlq", "topic_recommendations", "topic_churn_alerts", "topic_segments",
    "topic_anomalies",
)  # fmt: skip


async def everything(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every record of the outputs and the changelog; the run's own input topic name (in
    the DLQ's ``source_topic`` header) reads ``<events>``."""
    name = settings.topic_events.encode()

    def same(raw: bytes | None) -> bytes | None:
        return raw.replace(name, b"<events>") if raw is not None else None

    async def records(topic: str) -> list[tuple[Any, ...]]:
        return [
            (r.partition, r.offset, r.key, r.value, tuple((h, same(v)) for h, v in r.headers))
            for r in await read_all(settings.kafka_bootstrap, topic, settings.partitions)
        ]  # fmt: skip

    out = {name: await records(getattr(settings, name)) for name in OUTPUTS}
    out["changelog"] = [(*r[:3], fence_named(r[3]), r[4]) for r in
                        await records(changelog_topic(settings))]  # fmt: skip
    return out


def last_per_key(records: list[tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    return {(r[0], r[2]): (r[3], r[4]) for r in records}


def fence_named(envelope: bytes | None) -> Any:
    """An envelope, its offset fences keyed by partition only (their keys name the input
    topic's identity, which differs between the two runs' topics)."""
    if envelope is None:
        return None
    env = orjson.loads(envelope)
    env["f"] = {key.rsplit(":", 1)[1]: offset for key, offset in env.get("f", {}).items()}
    return env


async def test_batch_produce_writes_the_same_bytes_as_one_send_per_record(
    settings: Settings, tmp_path: Path
) -> None:
    base = settings.with_(partitions=1, batch_size=BATCH, batch_within_ms=120_000)
    one_by_one = sibling(
        base, "sends", batch_produce=False, live_envelopes=0, fetch_handoff=False
    )  # fmt: skip
    batched = sibling(
        base, "batches", batch_produce=True, live_envelopes=1000, fetch_handoff=False
    )  # fmt: skip
    # and the batch hand-off (SHOPSTREAM_FETCH_HANDOFF): a partition fetch per Faust message
    fetched = sibling(
        base, "fetches", batch_produce=True, live_envelopes=1000, fetch_handoff=True
    )  # fmt: skip
    records = workload(users=60, seed=29, bots=2, whole=BATCH)
    records[7] = (records[7][0], b"{not json")  # a dead letter (with headers)
    runs = {"sends": one_by_one, "batches": batched, "fetches": fetched}
    for s in runs.values():
        await ensure_topics(s)
        await produce(s.kafka_bootstrap, s.topic_events, list(records))
    await asyncio.gather(*(
        run_clean(s, len(records), tmp_path / f"{name}.log", timeout_s=240)
        for name, s in runs.items()
    ))  # fmt: skip
    before = await everything(one_by_one)
    counts = {name: len(rs) for name, rs in before.items()}
    assert counts["changelog"] > 0 and counts["topic_recommendations"] > 0, counts
    assert counts["topic_dlq"] == 1 and counts["topic_segments"] > 0, counts
    for run, s in (("batch produce", batched), ("batch hand-off", fetched)):
        after = await everything(s)
        for name in OUTPUTS:
            assert after[name] == before[name], f"{name} differs ({run})"
        assert last_per_key(after["changelog"]) == last_per_key(before["changelog"]), run
        assert len(after["changelog"]) <= counts["changelog"], run
        counts[f"changelog ({run})"] = len(after["changelog"])
    say(f"{len(records)} events: identical records on every output and the changelog {counts}")


async def test_a_handed_over_batch_is_sent_without_waiting_the_linger(settings: Settings) -> None:
    """send_batches closes each batch: the broker acknowledges it at once, even with a
    producer linger of a minute (an open batch waits the linger, and ``flush`` does not
    cut it short: the worker awaits its outputs and flushes its changelog in every batch)."""
    s = settings.with_(partitions=1)
    await ensure_topics(s)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=60_000)
    await producer.start()
    try:
        async def no_buffered() -> None:
            return None

        app = SimpleNamespace(producer=SimpleNamespace(
            _ensure_producer=lambda: producer, buffer=SimpleNamespace(size=0, flush=no_buffered),
        ))  # fmt: skip
        records: list[Any] = [(s.topic_segments, 0, b"k%d" % i, b"v", None) for i in range(3)]
        sent = await send_batches(app, records)
        metadata = await asyncio.wait_for(asyncio.gather(*(f for f, *_ in sent)), timeout=20)
        assert [m.offset for m in metadata] == [0]  # one batch, its base offset
        await asyncio.wait_for(producer.flush(), timeout=20)
    finally:
        await producer.stop()
    got = await read_all(s.kafka_bootstrap, s.topic_segments, 1)
    assert [(r.key, r.value) for r in got] == [(b"k0", b"v"), (b"k1", b"v"), (b"k2", b"v")]
