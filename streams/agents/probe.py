"""Whether offsets missing from a partition's records are in the log at all.

The worker re-reads a partition whose records skip offsets (``streams.patches.order``): Faust
can drop fetched records before the agent. But some offsets are never delivered to any
consumer — a transactional producer's commit markers (one per transaction and partition),
records removed by compaction or retention — and re-reading cannot bring them. A
:class:`GapProbe` asks the broker directly, with a consumer of its own (no group, nothing
shared with Faust's fetch pipeline): fetched from the first missing offset, which offset
comes first? If it is past the hole, the hole is in the log and the partition goes on at
once; if it is the first missing offset, the records exist and are read again.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.settings import Settings
from streams.kafka import client_options

log = logging.getLogger(__name__)

#: How long one probe waits for the broker's answer.
PROBE_TIMEOUT_S = 5.0


class GapProbe:
    """``first_present(partition, offset)``: the first offset at or after ``offset`` that the
    log of ``topic[partition]`` delivers to a consumer (``None``: nothing there yet, or the
    broker did not answer); the answers are kept for :meth:`proven`."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.consumer: AIOKafkaConsumer | None = None
        self.answers: dict[int, tuple[int, int]] = {}  # partition -> (asked, first present)
        self.lock = asyncio.Lock()

    def proven(self, partition: int, offset: int) -> int | None:
        """The answer of the last probe of ``partition`` from ``offset``, if there was one."""
        answer = self.answers.get(partition)
        return answer[1] if answer is not None and answer[0] == offset else None

    def forget(self, partition: int) -> None:
        self.answers.pop(partition, None)

    async def probe(self, partition: int, offset: int) -> int | None:
        """Fetch ``partition`` from ``offset`` and note the first offset delivered."""
        # the first probe also connects: more time for it
        timeout = PROBE_TIMEOUT_S if self.consumer is not None else 3 * PROBE_TIMEOUT_S
        try:
            async with self.lock:
                first = await asyncio.wait_for(self._first(partition, offset), timeout)
        except Exception as exc:  # noqa: BLE001 - the partition is re-read instead
            log.warning("could not probe %s[%d] from %d: %r", self.topic, partition, offset, exc)
            return None
        if first is not None:
            self.answers[partition] = (offset, first)
        return first

    async def _first(self, partition: int, offset: int) -> int | None:
        if self.consumer is None:
            consumer = AIOKafkaConsumer(
                **client_options(self.settings), enable_auto_commit=False,
                group_id=None, auto_offset_reset="earliest",
                client_id=f"{self.settings.app_id}-gap-probe",
            )  # fmt: skip
            self.consumer = consumer
            try:
                await consumer.start()
            except BaseException:  # a timeout too: no half-started client is kept
                self.consumer = None
                await consumer.stop()
                raise
        tp = TopicPartition(self.topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, offset)
        fetched = await self.consumer.getmany(tp, timeout_ms=int(PROBE_TIMEOUT_S * 800),
                                              max_records=1)  # fmt: skip
        records = fetched.get(tp)
        return records[0].offset if records else None

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
