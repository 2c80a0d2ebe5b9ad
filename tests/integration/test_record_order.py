"""A record the consumer drops before the agent is re-read, never committed past.

tests/integration/test_scale_out.py (a worker joining mid-stream) once lost every effect of
a user's session and of a day's figures, with the group drained and nothing logged: Faust
dropped records between its fetcher and the agent at the rebalance, the next records of the
partition moved every offset fence past them, and Faust committed past them (it acks the
records its stream skips, and commits over a jump in the fetched offsets). Here the
droppoint hook (tests/support/droppoint.py) makes that drop happen on purpose: offsets 5..11
of partition 0 are dropped the first time they are fetched. Every event must still be
applied exactly once (each user's profile counts all of their events) and the group must
drain. Before streams/patches/order.py, the 7 records were committed unprocessed.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.core.settings import Settings
from streams.kafka import committed_offsets, ensure_topics
from tests.support.chaos import changelog_topic, read_all
from tests.support.worker import WorkerProcess, produce

T0 = 1_709_283_600_000
#: partition, first offset, end offset: in the middle, and at the head of a new group's
#: partition (no committed offset: the partition starts at its log start)
#: and every record of the partition (nothing arrives after them to show a hole: the worker
#: must notice that its log holds records that never came)
DROPS = [(0, 5, 12), (0, 0, 3), (0, 0, 10**6)]


def events(n: int, users: int = 6) -> list[tuple[bytes | None, bytes | None]]:
    out: list[tuple[bytes | None, bytes | None]] = []
    for i in range(n):
        uid = f"u{i % users}"
        out.append((uid.encode(), orjson.dumps({
            "event_id": f"e{i}", "type": "view", "user_id": uid, "session_id": f"s{i % users}",
            "item_id": f"i{i % 13}", "ts": T0 + i * 1000})))  # fmt: skip
    return out


@pytest.mark.parametrize("drop", DROPS, ids=["middle", "head", "all"])
async def test_dropped_records_are_read_again_not_committed_past(
    settings: Settings, tmp_path: Path, drop: tuple[int, int, int]
) -> None:
    data = events(120)
    await ensure_topics(settings)
    await produce(settings, data)
    spec = ":".join(str(x) for x in drop)
    worker = WorkerProcess(settings, tmp_path / "worker.log", preload="tests.support.droppoint",
                           env={"SHOPSTREAM_TEST_DROP": spec})  # fmt: skip
    with worker:
        await asyncio.to_thread(worker.wait_healthy)
        for _ in range(240):  # until the group committed every record (at most 60 s)
            if sum((await committed_offsets(settings)).values()) >= len(data):
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # the last batch's changelog writes
        log = worker.full_log()
    in_partition = (await committed_offsets(settings))[drop[0]]
    dropped = min(drop[2], in_partition) - drop[1]
    assert log.count("droppoint: dropped") == dropped > 0, "the hook must drop records"
    changelog = await read_all(settings.kafka_bootstrap, changelog_topic(settings), 2)
    last = {r.key: r.value for r in sorted(changelog, key=lambda r: (r.partition, r.offset))}
    produced = Counter(k.decode() for k, _ in data if k)
    counted = {orjson.loads(k): orjson.loads(v)["p"]["n_events"] for k, v in last.items()}
    assert counted == dict(produced), "events lost or applied twice (user -> events counted)"
    assert sum((await committed_offsets(settings)).values()) == len(data), log[-3000:]


async def test_a_transactional_producers_commit_markers_cost_one_re_read_each(
    settings: Settings, tmp_path: Path
) -> None:
    """A storefront that produces with Kafka transactions leaves a commit marker after each
    transaction: an offset no consumer ever receives. The worker sees a hole there; a fetch of
    its own from the marker (streams.agents.probe) gets the next offset first, which proves
    the hole is in the log, so it is accepted after one re-read, logged as a marker, not as
    skipped records. Before, the first marker was re-read every 2 s forever: a
    transactional storefront stalled its partition for good."""
    transactions, per_tx = 4, 10
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                transactional_id=f"shop-{settings.topic_events}")  # fmt: skip
    await producer.start()
    data = events(transactions * per_tx)
    try:
        for t in range(transactions):
            async with producer.transaction():
                for key, value in data[t * per_tx : (t + 1) * per_tx]:
                    await producer.send(settings.topic_events, value, key=key, partition=0)
    finally:
        await producer.stop()
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    with worker:
        await asyncio.to_thread(worker.wait_healthy)
        for _ in range(240):  # until every record before the last marker is committed (60 s)
            if (await committed_offsets(settings)).get(0, 0) >= transactions * (per_tx + 1) - 1:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # the last batch's changelog writes
        log = worker.full_log()
    changelog = await read_all(settings.kafka_bootstrap, changelog_topic(settings), 2)
    last = {r.key: r.value for r in sorted(changelog, key=lambda r: (r.partition, r.offset))}
    counted = {orjson.loads(k): orjson.loads(v)["p"]["n_events"] for k, v in last.items()}
    assert counted == dict(Counter(k.decode() for k, _ in data if k)), log[-3000:]
    # the markers between transactions (each at the end of one, so at 10, 21, 32; a marker
    # is found again if a rebalance makes the worker start the partition over)
    proven = set(re.findall(r"offsets (\d+)\.\.(\d+) are not in the log \(a transaction", log))
    markers = {(t + 1) * (per_tx + 1) - 1 for t in range(transactions - 1)}
    assert proven == {(str(m), str(m)) for m in markers}, log[-3000:]
    # Faust may really drop records after the seek a marker costs (they are then re-read, and
    # counted above); what must never happen is a hole made of markers alone taken for one
    skipped = re.findall(r"offsets (\d+)\.\.(\d+) never reached the agent", log)
    taken = [(a, b) for a, b in skipped if set(range(int(a), int(b) + 1)) <= markers]
    assert not taken, f"markers taken for dropped records: {taken}"
    assert "re-read 3 times" not in log, "a marker was re-read until given up"
