"""``shopstream repartition``: add partitions, moving each user's state with their key.

Kafka sends a record to ``murmur2(key) % partitions``, so adding partitions moves about half
of the users (going from N to 2N) to another partition. Their state (the profile envelope
with its churn track and fences) lives in the profile changelog partition of the *old*
partition; without a move, the user's next event would start a blank profile on the new
partition while the old copy lingered on the old one. The procedure (docs/reliability.md,
"Adding partitions"), run while the workers are stopped:

1. refuse if the consumer group still has members (stop the workers first) or has not
   processed every record (a user's old records would otherwise be processed on the old
   partition after the move: let the workers drain first);
2. add partitions to the events topic, every output topic and the profile changelog;
3. read the changelog to its end and, for every user whose partition changes, write their
   envelope to the new partition (``pt``: the new one, ``g``: the new partition count, so
   it wins over the old copy at recovery: ``streams.patches.table``) and a tombstone to
   the old one.

Fences name their source partition, so a moved user's first event on the new partition is
fresh and nothing is skipped; the similarity store's fences are per partition too. The
models of a new partition start fresh (they learn from its events only).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from streams.core.errors import ConfigError
from streams.core.settings import Settings
from streams.kafka import (
    changelog_topic,
    client_options,
    committed_offsets,
    describe,
    group_members,
)
from streams.tools.evaluate_churn import partition_of

log = logging.getLogger(__name__)


async def read_state(
    settings: Settings, partitions: int
) -> tuple[dict[int, int], dict[str, tuple[int, bytes]]]:
    """Records of the events topic past the group's committed offsets, per partition; and
    the last envelope of every user in the changelog: ``{user: (partition, bytes)}``."""
    committed = await committed_offsets(settings)
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    out: dict[str, tuple[int, bytes]] = {}
    try:
        events = [TopicPartition(settings.topic_events, p) for p in range(partitions)]
        lag = {tp.partition: end - committed.get(tp.partition, 0)
               for tp, end in (await consumer.end_offsets(events)).items()}  # fmt: skip
        tps = [TopicPartition(changelog_topic(settings), p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                for rec in records:
                    uid = orjson.loads(rec.key)
                    if rec.value is None:
                        out.pop(uid, None)
                    else:
                        out[uid] = (tp.partition, rec.value)
                if records and records[-1].offset >= ends[tp] - 1:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return {p: n for p, n in lag.items() if n > 0}, out


async def repartition(settings: Settings, partitions: int) -> dict[str, Any]:
    """Add partitions and move the users' state (see the module docstring)."""
    members = await group_members(settings)
    if members:
        raise ConfigError(
            f"consumer group {settings.app_id!r} has {members} member(s): stop every worker "
            "before adding partitions"
        )
    topics = [settings.topic_events, *settings.output_topics, changelog_topic(settings)]
    described = {t["topic"]: len(t["partitions"]) for t in await describe(settings, topics)
                 if not t["error_code"]}  # fmt: skip
    before = described.get(settings.topic_events, 0)
    if partitions <= before:
        raise ConfigError(f"{settings.topic_events!r} has {before} partitions already; "
                          f"partitions can only be added ({partitions} requested)")  # fmt: skip
    lag, state = await read_state(settings, before)
    if lag:
        raise ConfigError(
            f"consumer group {settings.app_id!r} has not processed every record of "
            f"{settings.topic_events!r} ({lag}): let the workers drain, then stop them"
        )
    grow = {t: NewPartitions(total_count=partitions) for t in topics
            if described.get(t, partitions) < partitions}  # fmt: skip
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.create_partitions(grow)
    finally:
        await admin.close()
    moved = 0
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        for uid, (old, raw) in sorted(state.items()):
            new = partition_of(uid, partitions)
            if new == old:
                continue
            env = orjson.loads(raw)
            env["pt"], env["g"] = new, partitions
            key = orjson.dumps(uid)
            await producer.send(changelog_topic(settings), orjson.dumps(env), key=key,
                                partition=new)  # fmt: skip
            await producer.send(changelog_topic(settings), None, key=key, partition=old)
            moved += 1
        await producer.flush()
    finally:
        await producer.stop()
    log.info("repartitioned %s: %d -> %d partitions, %d of %d users moved",
             settings.topic_events, before, partitions, moved, len(state))  # fmt: skip
    return {"topics": sorted(grow), "before": before, "after": partitions, "users": len(state),
            "moved": moved}  # fmt: skip
