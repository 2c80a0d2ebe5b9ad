"""Read a topic from the beginning with a plain aiokafka consumer (demo, tests, debugging)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.kafka import client_options
from streams.settings import Settings


def decode(value: bytes | None) -> Any:
    """JSON if the value is JSON, else the text (or ``None`` for an empty value)."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace")


async def read_topic(
    settings: Settings, topic: str, *, max_messages: int, idle_s: float
) -> list[dict[str, Any]]:
    """Up to ``max_messages`` records from the start of ``topic``; stops after ``idle_s`` idle."""
    consumer = AIOKafkaConsumer(
        topic, **client_options(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
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
        await asyncio.shield(consumer.stop())
