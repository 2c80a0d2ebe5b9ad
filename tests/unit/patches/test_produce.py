"""Guards of streams/patches/produce.py and ``Table.send_changelog_batch``: the private
faust-streaming and aiokafka names they use are there, and the bytes they write are the
bytes Faust's own sends write (the full check runs the worker both ways:
tests/integration/test_batch_produce.py)."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.serializers import codecs
from faust.tables.base import Collection
from faust.transport.drivers.aiokafka import Producer as FaustProducer
from faust.transport.producer import Producer as BaseProducer
from faust.transport.producer import ProducerBuffer

from streams.patches.produce import send_batches
from streams.patches.table import Table


def test_the_private_names_relied_on_exist() -> None:
    assert callable(FaustProducer._ensure_producer)
    assert "self.buffer = ProducerBuffer(" in inspect.getsource(BaseProducer.__init__)
    assert isinstance(ProducerBuffer.size, property) and callable(ProducerBuffer.flush)
    for name in ("create_batch", "send_batch", "_partition"):
        assert callable(getattr(AIOKafkaProducer, name)), name
    assert callable(BatchBuilder.close)  # a closed batch is sent without the linger
    assert "partition" in inspect.signature(AIOKafkaProducer.send_batch).parameters
    assert callable(Collection._on_changelog_sent)  # what send_changelog_batch mirrors
    assert "set_persisted_offset" in inspect.getsource(Collection._on_changelog_sent)
    assert issubclass(Table, Collection)


@pytest.mark.parametrize("key", ["u1", "ü-ß/😀", 'q"uote\\', "x" * 300])
def test_changelog_keys_are_what_fausts_json_codec_writes(key: str) -> None:
    assert codecs.dumps("json", key) == orjson.dumps(key)


class Batch:
    def __init__(self, room: int) -> None:
        self.room, self.records = room, []  # type: ignore[var-annotated]
        self.closed = False

    def append(self, *, timestamp: Any, key: Any, value: Any, headers: Any) -> Any:
        assert not self.closed, "a record appended to a closed batch"
        if self.records and len(self.records) >= self.room:
            return None
        self.records.append((key, value, headers))
        return object()

    def close(self) -> None:
        self.closed = True


class Producer:
    """aiokafka's producer API as send_batches uses it; keys partition by their length."""

    def __init__(self, room: int) -> None:
        self.room, self.batches = room, []  # type: ignore[var-annotated]
        self.client = SimpleNamespace(_wait_on_metadata=self.metadata)
        self.order: list[str] = []

    async def metadata(self, topic: str) -> None:
        self.order.append(f"metadata {topic}")

    def _partition(self, topic: str, partition: Any, key: Any, *args: Any) -> int:
        return len(key) % 2

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        # an open batch would wait the producer's linger (and take records from send())
        assert batch.closed, "a batch handed over open"
        self.order.append(f"batch {topic}[{partition}]")
        self.batches.append((topic, partition, batch.records))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def fake_app(producer: Producer, buffered: int = 0) -> Any:
    async def flush() -> None:
        producer.order.append("buffer flushed")

    buffer = SimpleNamespace(size=buffered, flush=flush)
    return SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer,
                                                    buffer=buffer))  # fmt: skip


def test_records_are_grouped_per_topic_partition_in_order_and_split_when_full() -> None:
    producer = Producer(room=2)
    records: list[Any] = [
        ("t", None, b"a", b"1", None), ("t", None, b"bb", b"2", [("h", b"v")]),
        ("t", None, b"c", b"3", None), ("c", 3, b'"u"', b"4", None), ("t", None, b"d", b"5", None),
    ]  # fmt: skip
    sent = asyncio.run(send_batches(fake_app(producer), records))
    expected = [("t", 1, 2), ("t", 1, 1), ("t", 0, 1), ("c", 3, 1)]
    assert [(t, p, n) for _, t, p, n in sent] == expected
    assert producer.batches == [
        ("t", 1, [(b"a", b"1", []), (b"c", b"3", [])]), ("t", 1, [(b"d", b"5", [])]),
        ("t", 0, [(b"bb", b"2", [("h", b"v")])]), ("c", 3, [(b'"u"', b"4", [])]),
    ]  # fmt: skip
    assert producer.order[0] == "metadata t" and producer.order.count("metadata t") == 1


def test_records_queued_in_fausts_buffer_are_flushed_first() -> None:
    producer = Producer(room=10)
    asyncio.run(send_batches(fake_app(producer, buffered=1), [("c", 0, b"k", None, None)]))
    assert producer.order == ["buffer flushed", "batch c[0]"]
    producer = Producer(room=10)
    assert asyncio.run(send_batches(fake_app(producer, buffered=1), [])) == []
    assert producer.order == []
