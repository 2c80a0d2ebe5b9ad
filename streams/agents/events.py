"""The one agent: ``shop.events`` → :class:`streams.worker.batch.BatchProcessor`.

Thin by design. Why it is shaped like this (faust-streaming's behaviours, docs/reliability.md):

* ``take``/``take_events`` ack the whole batch when the loop body returns *or raises*; we use
  ``noack_take`` and ack a batch only after all its effects are done. Bad records go to the
  DLQ, one user's failure sends that user's events there, retriable Redis errors are retried
  until they succeed (the batch is not acked meanwhile, so nothing is lost). A batch that
  fails otherwise is never dead-lettered (it may be half-applied): the worker stops at once
  (:func:`streams.worker.stopping.stop_now`) and the batch is redelivered on restart, where
  every effect is fenced. On shutdown the current batch gets a grace period to finish;
  otherwise it stays unacked and is redelivered (and fenced).
* ``concurrency=1``: a second instance could commit past an event still in flight.
* Redis updates are fenced by the partition offset inside the Lua script, and user state by
  the offset kept in each profile envelope, so a redelivered batch changes nothing.
* A timer moves the clocks of idle partitions (``SHOPSTREAM_IDLE_ADVANCE_S``,
  :mod:`streams.worker.idle`), under the batch lock, so quiet shops are alerted on time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from faust.types import TP

from streams.agents.probe import GapProbe
from streams.core.errors import Fenced, StateDiverged
from streams.kafka import committed_offsets
from streams.patches import handoff
from streams.patches.order import (
    FIRST_RECORD_S,
    HOLE_DEADLINE_S,
    RESEEK_S,
    GuardedConsumer,
    RecordOrder,
)
from streams.patches.watchdogs import WATCHDOG_INTERVAL_S, CommitWatchdog
from streams.worker.batch import BatchProcessor
from streams.worker.context import ShopApp
from streams.worker.intake import Fetched, first_of
from streams.worker.stopping import stop_now

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Seconds the table's recovery waits for the assignment's plan before it seeks.
PLAN_WAIT_S = 20.0


async def run_batch(
    processor: BatchProcessor, batch: Sequence[Any] | Fetched, grace_s: float,
    step: Callable[[], Awaitable[Any]] | None = None,
) -> bool:  # fmt: skip
    """Process one batch (or run ``step`` for it: settling an assignment before it is put
    in order); ``True`` when it may be acknowledged.

    A batch interrupted by shutdown gets ``grace_s`` seconds to finish; if it does not, it is
    left unacknowledged and will be redelivered (and fenced) after restart. Any error stops
    the worker (the batch is redelivered on restart): a batch fenced off (its partition moved
    to another worker while this one was paused), diverged state, or anything unexpected.
    """
    task = asyncio.ensure_future(step() if step is not None else processor.process(batch))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        log.info("stopping: letting the current batch of %d finish (%.0fs)", len(batch), grace_s)
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            task.cancel()
            log.warning("batch not finished at shutdown; it will be redelivered")
        raise
    except Fenced as exc:  # a zombie: its in-memory state learned a batch it must not write
        stop_now(f"batch of {len(batch)} abandoned, unacknowledged: {exc}; restarted, the "
                 "worker rejoins its group with state from the changelog")  # fmt: skip
    except StateDiverged as exc:
        stop_now(str(exc))
    except Exception as exc:  # noqa: BLE001 - never dead-letter a half-applied batch
        processor.telemetry.on_batch_failure()
        first = first_of(batch)
        where = f" ({first.topic}[{first.partition}]@{first.offset}..)" if first else ""
        stop_now(f"a batch of {len(batch)}{where} failed unexpectedly: {exc!r}", exc)
    return True


def register(shop: ShopApp, processor: BatchProcessor) -> None:
    """Attach the agent and its rebalance and shutdown hooks to the app."""
    settings = shop.settings
    topic = settings.topic_events
    #: where a partition without a committed offset starts (``earliest``: its log start,
    #: asked at each assignment; 0 until known)
    log_starts: dict[int, int] = {}

    def start(partition: int) -> int:
        return starts_at(partition, guarded().committed_offset(TP(topic, partition)))

    def starts_at(partition: int, committed: int | None) -> int:
        """Where a consumer at ``committed`` starts ``partition`` (none: its log start)."""
        return committed if committed is not None else log_starts.get(partition, 0)

    #: the consumer generation whose assignment :func:`on_assigned` has planned
    planned: list[int | None] = [None]

    async def plan_made() -> None:
        """Before the table's recovery resumes and seeks the assigned partitions
        (streams/patches/recovery.py): :func:`on_assigned` has planned where each starts
        (the partitions to read again from their stored models), waited for at most
        :data:`PLAN_WAIT_S`. Faust runs the recovery and ``on_partitions_assigned`` side by
        side; a recovery shorter than the plan (~0.2 s: the log start, the claim, the undo
        hashes) sought to the committed offset alone, and the re-read then found its first
        fetch past the stored models: a hole sought back while later records were in flight,
        its batches cut elsewhere than the first time (reproduced by delaying the plan 3 s:
        "records skipped by the consumer", batches from 11499 and 11999 instead of 11500)."""
        deadline = time.monotonic() + PLAN_WAIT_S
        while planned[0] != shop.app.consumer_generation_id:
            if time.monotonic() >= deadline:
                log.warning("resuming the assigned partitions before their plan was made "
                            "(waited %.0f s)", PLAN_WAIT_S)  # fmt: skip
                return
            await asyncio.sleep(0.01)

    shop.app.before_resume = plan_made  # type: ignore[attr-defined]
    probe = GapProbe(settings, topic)
    # records past a hole that may still arrive after the seek back to it: Faust's fetch
    # being handed on, the agent's stream buffer, the batch being taken
    backlog = settings.max_poll_records + settings.stream_buffer_maxsize + settings.batch_size
    order = RecordOrder(start, probe.proven, backlog=backlog)

    def guarded() -> GuardedConsumer:
        """The consumer, committing only what the agent processed (streams/patches/order.py)."""
        consumer = shop.app.consumer
        assert isinstance(consumer, GuardedConsumer), "streams.app.create_app makes one"
        if topic not in consumer.guarded:
            consumer.guard(topic)
            if settings.fetch_handoff:  # one message per partition fetch (patches/handoff.py)
                assert isinstance(consumer, handoff.HandoffConsumer), "create_app makes one"
                consumer.hand_off(topic)
            # partitions read again from their stored models (streams.worker.undo)
            consumer.start_at = lambda tp: processor.parts.replay_from.get(tp.partition)
            consumer.log_start = lambda tp: log_starts.get(tp.partition)  # read by plan()
        return consumer

    watchdog = CommitWatchdog(
        shop.app, on_stall=shop.telemetry.on_commit_stall,
        probe=lambda: committed_offsets(settings),
    )  # fmt: skip
    shop.app.timer(interval=WATCHDOG_INTERVAL_S)(watchdog.check)
    if settings.idle_advance_s > 0:  # quiet partitions: clocks follow the wall clock
        interval = min(max(settings.idle_advance_s / 4, 0.25), 15.0)
        shop.app.timer(interval=interval, name="advance_idle")(processor.advance_idle)

    async def take_fetches(stream: Any) -> None:
        """The batch hand-off (``SHOPSTREAM_FETCH_HANDOFF``, streams/patches/handoff.py):
        batches of records straight from the fetches, each fetch acked as offset ranges
        once all its records are done; otherwise as :func:`process_events` below."""
        grace_s = settings.shutdown_grace_s
        async for pieces in handoff.take_records(
            stream, settings.batch_size, settings.batch_within_ms / 1000
        ):
            if processor.parts.to_settle is not None:  # a new assignment: first settle it
                await run_batch(processor, Fetched(pieces), grace_s, processor.prepare)
            await read_again(processor.parts.take_replays())
            ranges = [(p.message.partition, *p.offsets) for p in pieces]
            kept = await admitted(order, ranges, pieces)
            processed: list[handoff.Piece] = []
            if kept and await run_batch(processor, Fetched(kept), grace_s):
                processed = kept
                watchdog.processed_ranges((p.message.tp, *p.offsets) for p in kept)
            # pieces left out are released, not committed (HandoffConsumer)
            await handoff.finish(stream, pieces, processed)

    @shop.app.agent(shop.events, concurrency=1, name="process_events")
    async def process_events(stream: Any) -> None:
        if settings.fetch_handoff:
            await take_fetches(stream)
            return
        # noack_take: Faust does not ack (and so never commits) a batch until we say so.
        async for batch in stream.noack_take(
            settings.batch_size, within=settings.batch_within_ms / 1000
        ):
            if stream.should_stop:  # a batch the stop cut short: read again by the next owner
                break  # (as handoff.take_records: where later batches start stays the same)
            if processor.parts.to_settle is not None:  # a new assignment: first settle it
                await run_batch(processor, batch, settings.shutdown_grace_s, processor.prepare)
            await read_again(processor.parts.take_replays())
            kept = await in_order(order, batch)
            if kept and await run_batch(processor, kept, settings.shutdown_grace_s):
                consumer = guarded()
                for event in kept:
                    consumer.confirm(event.message)
                watchdog.processed(kept)
            for event in batch:  # those left out are released, not committed (FastConsumer)
                await stream.ack(event)

    async def read_again(replays: dict[int, int]) -> None:
        """Partitions whose envelopes went back to their stored models (streams.worker.undo)
        are read again from there: the consumer's first seek went there (planned at
        assignment), or it starts before them anyway (the committed offset is behind the
        stored models), or it is sought back now (records fetched before are then held back
        until the re-read reaches them); :meth:`RecordOrder.read_again`."""
        consumer = guarded()
        for partition, offset in sorted(replays.items()):
            log.info("%s[%d]: reading again from %d, where its stored models are", topic,
                     partition, offset)  # fmt: skip
            tp = TP(topic, partition)
            sought = consumer.started_at.get(tp) == offset
            # where the consumer started: the committed offset its seek found, not the one
            # commit_back set since (seen: the undo hashes read after that seek, committed
            # 3000, set back to 500: the re-read was taken to start at 500, and 500..2999
            # came only after a "records skipped" seek, behind 3000..)
            began = consumer.began_at  # not start(): commit_back may have moved it since
            begin = starts_at(partition, began[tp]) if tp in began else start(partition)
            if order.read_again(partition, offset, sought=sought, begin=begin,
                                now=time.monotonic()):  # fmt: skip
                await consumer.rewind(tp, offset)

    async def in_order(order: RecordOrder, batch: Sequence[Any]) -> list[Any]:
        """The records of ``batch`` that follow the last ones processed without a hole; a
        partition with a hole is sought back to re-read the missing records
        (streams/patches/order.py)."""
        offsets = [(ev.message.partition, ev.message.offset) for ev in batch]
        return await admitted(order, [(p, o, o) for p, o in offsets], batch)

    async def admitted(
        order: RecordOrder, ranges: Sequence[tuple[int, int, int]], items: Sequence[T]
    ) -> list[T]:
        """:func:`in_order` of ``items`` standing for the offset ranges ``(partition, first,
        last)``."""
        kept, holes = order.admit_ranges(ranges, time.monotonic(), items)
        consumer = guarded()
        for tp in [tp for tp in consumer.rewinding() if tp.partition not in order.holes]:
            consumer.rewound(tp)
        for partition, want, got in holes:
            first = await probe.probe(partition, want)  # in the log at all?
            if first is not None and want < first <= got:
                log.info("%s[%d]: offsets %d..%d are not in the log (a transaction marker, "
                         "compaction): going on from %d", topic, partition, want, first - 1,
                         first)  # fmt: skip
            else:
                log.error(
                    "records skipped by the consumer: %s[%d] offsets %d..%d never reached the "
                    "agent; nothing after them is processed until they are re-read (seeking "
                    "back to %d)", topic, partition, want, got - 1, want,
                )  # fmt: skip
                shop.telemetry.on_skipped_records(got - want)
            await consumer.rewind(TP(topic, partition), want)
        for partition, start, end in order.accepted:
            await consumer.accept_gap(TP(topic, partition), start, end - 1)
        order.accepted.clear()
        return kept

    #: assigned partitions whose first record has not arrived yet -> since when (monotonic)
    waiting: dict[int, float] = {}

    async def reseek() -> None:
        """A seek back to a hole after which the partition delivered nothing (yet) is made
        again (seen: the first seek of a partition's first batch fetched nothing more); a
        hole no probe answered for is probed again at every tick. A hole open for
        :data:`HOLE_DEADLINE_S` whose records no probe proved absent from the log stops the
        worker: going on would skip records that exist (every fence would pass them), and a
        restart resumes at the committed offset, before the hole. A partition assigned
        :data:`FIRST_RECORD_S` ago whose log holds records past its start but that delivered
        none is sought to its start again (seen: a worker assigned a partition of a
        recreated topic received nothing for minutes)."""
        now = time.monotonic()
        for partition, start, seen, seeks in order.stuck(now, busy=processor.lock.locked()):
            stop_now(f"{topic}[{partition}]: offsets {start}..{seen - 1} did not arrive in "
                     f"{HOLE_DEADLINE_S:.0f} s and {seeks} seeks back to {start}, and no fetch "
                     f"proved them absent from the log (probe: first offset "
                     f"{probe.proven(partition, start)}); not going on without them")  # fmt: skip
        # a hole whose probe failed is probed again at every tick: records past it that keep
        # arriving (fetched before the seek) keep it from being overdue, and a transaction
        # marker must not wait for the deadline because one probe timed out
        for partition, hole in list(order.holes.items()):
            if probe.proven(partition, hole.start) is None:
                await probe.probe(partition, hole.start)
        for partition, start in order.overdue(now):
            if partition not in order.holes:
                continue  # revoked during a probe
            log.warning("re-reading %s[%d] from %d again", topic, partition, start)
            try:
                await guarded().rewind(TP(topic, partition), start)
            except Exception as exc:  # noqa: BLE001 - a timer's error would stop the app
                log.warning("could not seek %s[%d] back to %d (a rebalance?): %r; asked "
                            "again at the next tick", topic, partition, start, exc)  # fmt: skip
        for partition, since in list(waiting.items()):
            if partition in order.expected:
                del waiting[partition]  # its records arrive
            elif now - since >= FIRST_RECORD_S:
                waiting[partition] = now
                await kick(partition)

    async def kick(partition: int) -> None:
        tp, begin = TP(topic, partition), start(partition)
        try:
            ends = await asyncio.wait_for(guarded().highwaters(tp), 10.0)
        except Exception as exc:  # noqa: BLE001 - asked again at the next tick
            log.warning("could not read the log end of %s: %r", tp, exc)
            return
        end = ends.get(tp)
        if end is None or end <= begin:
            del waiting[partition]  # nothing to read yet: new records come the usual way
            return
        log.warning("%s[%d]: no record arrived in %.0f s although the log holds offsets "
                    "%d..%d: fetching from %d again", topic, partition, FIRST_RECORD_S, begin,
                    end - 1, begin)  # fmt: skip
        await guarded().rewind(tp, begin)

    shop.app.timer(interval=RESEEK_S / 2, name="reseek")(reseek)

    @shop.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        partitions = [tp.partition for tp in revoked if tp.topic == topic]
        processor.parts.on_revoked(partitions)
        for partition in partitions:
            order.forget(partition)
            probe.forget(partition)
            waiting.pop(partition, None)
            guarded().rewound(TP(topic, partition))
        await processor.parts.hand_over()

    @shop.app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        generation = shop.app.consumer_generation_id
        try:
            await plan(assigned)
        finally:
            planned[0] = generation  # the consumer may seek now (plan_made)

    async def plan(assigned: Any) -> None:
        consumer = guarded()  # before the generation's first record
        mine = [tp for tp in assigned if tp.topic == topic]
        processor.parts.on_assigned({tp.partition for tp in mine})
        for tp in mine:  # asked again below: a start from an earlier assignment may be stale
            log_starts.pop(tp.partition, None)
            processor.parts.log_starts.pop(tp.partition, None)
        now = time.monotonic()
        waiting.update({tp.partition: now for tp in mine if tp.partition not in order.expected})
        if mine:  # a new group (or a recreated topic) starts at the log start: a head
            try:  # record dropped there must be seen as a hole too
                earliest = await asyncio.wait_for(consumer.earliest_offsets(*mine), 15.0)
                log_starts.update({tp.partition: int(off) for tp, off in earliest.items()})
                processor.parts.note_log_starts(log_starts)
            except Exception as exc:  # noqa: BLE001 - 0 is assumed: a trimmed head costs re-reads
                log.warning("could not read the log start of %s: %r", topic, exc)
            await processor.parts.plan_replays({tp.partition for tp in mine})

    @shop.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def final_checkpoint(app: Any, **kwargs: Any) -> None:
        # A clean stop (e.g. scaling in) hands the models over too (Faust sends no revocation
        # while it stops); first, because the checkpoint waits for the broker.
        await processor.parts.hand_over()
        async with processor.lock:  # not in the middle of a batch
            await processor.checkpoint()
        await probe.stop()
