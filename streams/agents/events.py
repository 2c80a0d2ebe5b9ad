"""The main agent: ``shop.events`` → :class:`streams.processor.BatchProcessor`.

Thin by design. Why it is shaped like this (DESIGN §3):

* ``take``/``take_events`` ack the whole batch when the loop body returns *or raises*; we use
  ``noack_take`` and ack a batch only after all its effects are done. Nothing may raise in
  processing: bad records go to the DLQ, Redis errors are retried until they succeed (the
  batch is not acked meanwhile, so nothing is lost), and any other failure of one event sends
  that event to the DLQ with reason ``processing_error``. On shutdown the current batch gets
  a grace period to finish; otherwise it stays unacked and is redelivered (and fenced).
* ``concurrency=1``: a second instance could commit past an event still in flight.
* Redis updates are fenced by the partition offset inside the Lua script, and user state by
  the offset kept in each profile envelope, so a redelivered batch changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streams.processor import BatchProcessor, to_record

if TYPE_CHECKING:
    from streams.app import ShopApp

log = logging.getLogger(__name__)


async def run_batch(processor: BatchProcessor, batch: Sequence[Any], grace_s: float) -> bool:
    """Process one batch; ``True`` when it may be acknowledged.

    A batch interrupted by shutdown gets ``grace_s`` seconds to finish; if it does not, it is
    left unacknowledged and will be redelivered (and fenced) after restart. An unexpected
    error sends the batch to the DLQ (so nothing is lost) and acks it.
    """
    task = asyncio.ensure_future(processor.process(batch))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        log.info("stopping: letting the current batch of %d finish (%.0fs)", len(batch), grace_s)
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            task.cancel()
            log.warning("batch not finished at shutdown; it will be redelivered")
        raise
    except Exception:
        log.exception("batch of %d failed unexpectedly; sending it to the DLQ", len(batch))
        for rec in map(to_record, batch):
            await processor.dead_letter(rec, "processing_error", "batch failed")
    return True


class SkippedRecords:
    """Notices records that never reached the agent: an offset past the next one expected.

    Offsets of the events topic are consecutive (no compaction, no transactions), so a batch
    whose record for a partition is past the one after the last record seen there means the
    consumer dropped records in between — silently, and Faust may then commit past them.
    streams/recovery.py fixes the one cause we found; this check makes any other one loud.
    Expectations restart when a partition is revoked; a record at or below the expected
    offset is a redelivery (fenced), not a gap.

    >>> from types import SimpleNamespace as NS
    >>> def batch(*offs): return [NS(message=NS(partition=0, offset=o)) for o in offs]
    >>> gaps = SkippedRecords()
    >>> gaps.check(batch(235, 236)), gaps.check(batch(236, 237)), gaps.check(batch(240))
    ([], [], [(0, 238, 240)])
    """

    def __init__(self) -> None:
        self.expected: dict[int, int] = {}

    def check(self, batch: Sequence[Any]) -> list[tuple[int, int, int]]:
        """``(partition, expected, got)`` for every jump in ``batch``."""
        gaps = []
        expected = self.expected
        for event in batch:
            msg = event.message
            want = expected.get(msg.partition)
            if want is not None and msg.offset > want:
                gaps.append((msg.partition, want, msg.offset))
            if want is None or msg.offset >= want:
                expected[msg.partition] = msg.offset + 1
        return gaps

    def forget(self, partition: int) -> None:
        self.expected.pop(partition, None)


WATCHDOG_INTERVAL_S = 5.0
WATCHDOG_STRIKES = 3


class CommitWatchdog:
    """Notices when Faust stops committing offsets although batches are acked, and repairs it.

    Seen in fault injection (kill -9 then restart): now and then the restarted worker acks
    every record but Faust's committed offset never moves again (its commit logic waits for
    an offset that it will never see acked). Nothing is lost (every effect is fenced), but a
    later restart would replay everything since. After ``WATCHDOG_STRIKES`` checks with
    processed offsets ahead of a committed offset that does not move, the watchdog logs an
    error and seeks the consumer back to the committed offsets: the records since then are
    delivered and acked again (their effects are fenced), which lets commits resume.
    """

    def __init__(self, shop: ShopApp) -> None:
        self.shop = shop
        self.acked: dict[Any, int] = {}
        self.last: dict[Any, int | None] = {}
        self.strikes = 0

    def processed(self, batch: Sequence[Any]) -> None:
        for event in batch:
            tp, offset = event.message.tp, event.message.offset
            if offset > self.acked.get(tp, -1):
                self.acked[tp] = offset

    async def check(self) -> None:
        consumer = self.shop.app.consumer
        committed_by_tp = getattr(consumer, "_committed_offset", {})  # read only
        assigned = consumer.assignment()
        stalled = {}
        for tp, acked in self.acked.items():
            committed = committed_by_tp.get(tp)
            if tp in assigned and committed is not None and acked + 1 > committed:
                if self.last.get(tp) == committed:
                    stalled[tp] = (committed, acked)
            self.last[tp] = committed
        self.strikes = self.strikes + 1 if stalled else 0
        if self.strikes >= WATCHDOG_STRIKES:
            log.error(
                "offset commits stalled (committed, processed): %s; seeking back to the "
                "committed offsets (replayed records are fenced)",
                {f"{tp.topic}[{tp.partition}]": v for tp, v in stalled.items()},
            )
            self.strikes = 0
            try:
                await consumer.perform_seek()
            except Exception:  # e.g. the broker is unreachable: try again next time
                log.exception("seeking back to the committed offsets failed")


def register(shop: ShopApp) -> BatchProcessor:
    """Attach the agent to the app; returns the processor."""
    settings = shop.settings
    processor = BatchProcessor(shop)

    @shop.app.agent(shop.events, concurrency=1, name="process_events")
    async def process_events(stream: Any) -> None:
        # noack_take: Faust does not ack (and so never commits) a batch until we say so.
        async for batch in stream.noack_take(
            settings.batch_size, within=settings.batch_within_ms / 1000
        ):
            for partition, want, got in skipped.check(batch):
                log.error(
                    "records skipped by the consumer: %s[%d] offsets %d..%d never reached "
                    "the agent (their effects are missing unless an earlier owner applied "
                    "them)", settings.topic_events, partition, want, got - 1,
                )  # fmt: skip
                shop.telemetry.on_skipped_records(got - want)
            if await run_batch(processor, batch, settings.shutdown_grace_s):
                for event in batch:
                    await stream.ack(event)
                watchdog.processed(batch)

    skipped = SkippedRecords()
    watchdog = CommitWatchdog(shop)
    shop.app.timer(interval=WATCHDOG_INTERVAL_S)(watchdog.check)

    @shop.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        # Another worker may own these partitions next: rebuild from the table if they return.
        partitions = [tp.partition for tp in revoked if tp.topic == settings.topic_events]
        for partition in partitions:
            processor.states.pop(partition, None)
            skipped.forget(partition)
        await processor.hand_over()

    @shop.app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def take_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        processor.on_assigned(
            {tp.partition for tp in assigned if tp.topic == settings.topic_events}
        )

    @shop.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def final_checkpoint(app: Any, **kwargs: Any) -> None:
        # A clean stop (e.g. scaling in) hands the models over too (Faust sends no revocation
        # while it stops); first, because the checkpoint waits for the broker.
        await processor.hand_over()
        async with processor.lock:  # not in the middle of a batch
            await processor.checkpointer.save(processor.models, app.producer.flush)

    shop.processor = processor
    return processor
