"""Read a topic from the beginning with a plain aiokafka consumer (demo, tests, debugging)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.core.settings import Settings
from streams.kafka import client_options


async def stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer; aiokafka 0.14 may re-raise the cancellation of its own internal
    offset-reset task from ``stop()``, which is not an error of ours."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # a real cancellation of the caller


def decode(value: bytes | None) -> Any:
    """JSON if the value is JSON, else the text (or ``None`` for an empty value)."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace")


async def read_topic(
    settings: Settings, topic: str, *, max_messages: int, idle_s: float, last: bool = False
) -> list[dict[str, Any]]:
    """Up to ``max_messages`` records of ``topic``; stops after ``idle_s`` idle.

    From the start of the topic, or with ``last`` the newest ``max_messages`` of each partition.
    """
    consumer = AIOKafkaConsumer(
        topic, **client_options(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    out: list[dict[str, Any]] = []
    try:
        await consumer.start()
        if last:
            await consumer.getmany(timeout_ms=100)  # join: partitions get assigned
            parts = consumer.assignment()
            ends = await consumer.end_offsets(list(parts))
            starts = await consumer.beginning_offsets(list(parts))
            for tp in parts:
                consumer.seek(tp, max(starts[tp], ends[tp] - max_messages))
        while len(out) < max_messages:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=max_messages)
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    msg: dict[str, Any] = {"partition": r.partition, "offset": r.offset}
                    msg["key"] = r.key.decode("utf-8", "replace") if r.key else None
                    msg["value"] = decode(r.value)
                    if r.headers:
                        msg["headers"] = {k: v.decode("utf-8", "replace") for k, v in r.headers}
                    out.append(msg)
        return out[:max_messages]
    finally:
        await stop_quietly(consumer)
