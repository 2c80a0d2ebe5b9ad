"""``shopstream reset``: start over from the retained input (after Redis lost its data).

The similarity store, the profile table, the models and the outputs are all derived from the
events topic. When a part of that state is lost and cannot be restored from a backup (Redis
without its AOF), the worker refuses to go on (docs/reliability.md, "Redis durability");
this command makes it start over instead, with the workers stopped: it deletes the consumer
group's committed offsets, the profile changelog (created again, empty), every Redis key
under the prefix but the erasure fences (:mod:`streams.worker.tombstones`: forgotten users'
records are still in the topic) and the local model checkpoints. The restarted workers then
process the events topic from its beginning and derive everything again. Outputs are
published again with their deterministic ids (consumers de-duplicate); what the topic no
longer retains (retention) is gone for good, and the command says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from models.similarity import delete_prefix, key_base
from streams.core.errors import ConfigError
from streams.core.settings import Settings
from streams.kafka import changelog_topic, client_options, describe, ensure_topics, group_members
from streams.worker.tombstones import restore_fences, save_fences


async def earliest_offsets(settings: Settings) -> dict[int, int]:
    """The first offset the events topic still holds, per partition (0: nothing lost)."""
    parts = [t for t in await describe(settings, [settings.topic_events]) if not t["error_code"]]
    n = len(parts[0]["partitions"]) if parts else 0
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_events, p) for p in range(n)]
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in starts.items()}


async def reset(settings: Settings) -> dict[str, Any]:
    """Delete the derived state (see the module docstring); the workers must be stopped."""
    members = await group_members(settings)
    if members:
        raise ConfigError(f"consumer group {settings.app_id!r} has {members} member(s): stop "
                          "every worker first")  # fmt: skip
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.delete_topics([changelog_topic(settings)])
    finally:
        await admin.close()
    await _delete_group(settings)
    await ensure_topics(settings, wait_s=60)  # the changelog again, empty
    client = aioredis.from_url(settings.redis_url)
    try:  # the erasure fences stay: forgotten users' records are still in the topic
        fences = await save_fences(client, settings.redis_prefix)
        deleted = await delete_prefix(client, key_base(settings.redis_prefix)) - len(fences)
        kept = await restore_fences(client, fences)
    finally:
        await client.aclose()
    checkpoints = Path(settings.data_dir) / "checkpoints"
    shutil.rmtree(checkpoints, ignore_errors=True)
    lost = {p: o for p, o in (await earliest_offsets(settings)).items() if o > 0}
    return {"redis_keys": deleted, "erasure_fences_kept": kept, "lost_to_retention": lost}


async def _delete_group(settings: Settings) -> None:
    """Delete the consumer group (its committed offsets), with the DeleteGroups request."""
    from aiokafka.protocol.admin import DeleteGroupsRequest

    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        node = await admin.find_coordinator(settings.app_id)
        response = await admin._send_request(DeleteGroupsRequest([settings.app_id]), node)  # no API
    finally:
        await admin.close()
    errors = [e for _, e in response.results if e not in (0, 69)]  # 69: no such group
    if errors:
        raise ConfigError(f"deleting consumer group {settings.app_id!r} failed (error {errors})")
