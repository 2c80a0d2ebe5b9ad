"""The batch hand-off (docs/performance.md, "step 3"): one Faust message per partition fetch.

Faust turns every fetched record into a ``Message``, runs the conductor callback for it
(decode, ``Event``, the stream's buffer), hands it to the agent through ``Stream``/``noack_take``
and takes one ``ack`` back: ~37 µs of CPU per record before any work is done (issue 20). For
the topics named by :meth:`HandoffConsumer.hand_off` (the events topic only) this module
replaces that with one :class:`FetchMessage` per (topic, partition) of a fetch, holding the raw
aiokafka ``ConsumerRecord``s; the agent (``streams.agents.events``) takes records, not
messages (:func:`take_records`), builds its ``Record``s straight from them
(``streams.worker.intake.record_from``) and acks each fetch as offset ranges. Every other topic
(the changelog during recovery) keeps Faust's per-record path.

The commit logic is Faust's own, fed as per-record acks would feed it: the final ack of a
fetch appends every offset of the ranges the agent *confirmed* (processed) to ``_acked[tp]``,
skipping those below the committed offset or acked already, and adds their number to
``_n_acked``; ``_new_offset`` then commits up to the first offset not acked, never past an
unprocessed record, after flushing the producer. Ranges the agent did not process (held back
by ``RecordOrder``, skipped by the stream after a rebalance) are released like the unconfirmed
messages of :class:`streams.patches.order.GuardedConsumer`: nothing waits for them, nothing
commits past them. ``_add_gap`` stays a no-op for these topics (the guarded consumer's), and a
fetch is cut where its offsets jump, so every message is a run of consecutive offsets and a
jump is a hole between messages for ``RecordOrder``, as before.

Written for faust-streaming 0.15.3 (pinned in pyproject.toml): ``getmany`` follows
``Consumer.getmany``, :func:`take_records` follows ``Stream.noack_take``, the ack follows
``Consumer.ack``; tests/unit/patches/test_handoff.py hashes their source.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from faust.types import TP
from faust.types.tuples import ConsumerMessage, ack_lock
from mode.utils.futures import notify
from mode.utils.times import want_seconds

from streams.patches import fastpath

log = logging.getLogger(__name__)


class FetchMessage(ConsumerMessage):
    """The records ``records`` (consecutive offsets ``first..offset``) of one partition from
    one fetch, as one Faust message (value ``b""``: nothing for Faust to decode).

    ``confirmed``: the offset ranges the agent processed (the first ``counted`` of them
    counted as acks already); ``left``: how many of its records the agent has not finished
    with."""

    __slots__ = ("confirmed", "counted", "first", "left", "made", "records")

    def __init__(self, tp: TP, records: Sequence[Any], generation_id: int | None) -> None:
        first, last = records[0], records[-1]
        ts = last.timestamp
        seconds = ts / 1000.0 if ts is not None else cast(float, None)
        super().__init__(
            tp.topic, tp.partition, last.offset, seconds,
            last.timestamp_type, None, None, b"", None, 0, 0, tp, generation_id=generation_id,
        )  # fmt: skip
        self.records = records
        self.first: int = first.offset
        self.confirmed: list[tuple[int, int]] = []
        self.counted = 0
        self.left = len(records)
        #: when the fetch loop made it (the event loop's clock): how long its records have
        #: waited for the agent already (:func:`take_records`)
        self.made = loop_time()


def loop_time() -> float:
    """The running event loop's clock (``time.monotonic`` outside one)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def consecutive(records: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``records`` cut where their offsets are not consecutive.

    >>> from types import SimpleNamespace as R
    >>> [[r.offset for r in run] for run in consecutive([R(offset=o) for o in (3, 4, 7, 8, 10)])]
    [[3, 4], [7, 8], [10]]
    """
    start = 0
    for i in range(1, len(records)):
        if records[i].offset != records[i - 1].offset + 1:
            yield records[start:i]
            start = i
    if records:
        yield records[start:]


class HandoffConsumer(fastpath.FastConsumer):
    """The fast consumer that hands the :meth:`hand_off` topics over a fetch at a time."""

    handed_off: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the last offset handed on per partition (a fetch message Faust's fetch loop took,
        #: :meth:`getmany`), forgotten at every seek: Faust's read offset is either that
        #: offset or a seek's target
        self.handed: dict[TP, int] = {}
        topics = getattr(self.app, "hand_off_topics", ())  # set by create_app: from the start
        if topics:
            self.hand_off(*topics)

    async def seek_to_committed(self) -> Any:
        self.handed.clear()
        return await super().seek_to_committed()

    async def seek_wait(self, partitions: Any) -> None:
        for tp in partitions:
            self.handed.pop(tp, None)
        await super().seek_wait(partitions)

    async def _seek(self, partition: TP, offset: int) -> None:
        self.handed.pop(partition, None)
        await super()._seek(partition, offset)

    def hand_off(self, *topics: str) -> None:
        """Deliver ``topics`` (guarded ones) as :class:`FetchMessage`s from the next fetch."""
        self.handed_off = frozenset(topics)
        log.info("batch hand-off: %s delivered one partition fetch at a time", ", ".join(topics))

    def fetch_messages(self, tp: TP, records: Sequence[Any]) -> list[FetchMessage]:
        """The messages of one partition's records of a fetch, cut at offset jumps: those
        below the read offset left out (Faust's ``_drain_messages`` drops such a record),
        and the read offset itself when it is the last offset handed on. Faust's read offset
        is the last offset read or, after a seek, the next one to read, and its ``>=`` let
        the last record of a fetch through twice when the fetch had been in flight during
        the assignment's seek to the committed offset: that batch then held 499 new
        records, and every later batch was cut elsewhere than a clean run's (the chaos test
        stopped while reading again counted a recommendation a clean run never showed)."""
        read = self._read_offset.get(tp)
        if read is not None and read == self.handed.get(tp):
            read += 1  # handed on already
        if read is not None and records and records[0].offset < read:
            records = [r for r in records if r.offset >= read]
        generation = self.app.consumer_generation_id
        return [FetchMessage(tp, run, generation) for run in consecutive(records)]

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        """``Consumer.getmany`` of faust-streaming 0.15.3, with the records of the handed-off
        topics as :class:`FetchMessage`s (first), the others per record (round robin)."""
        if not self.handed_off:
            async for item in super().getmany(timeout):
                yield item
            return
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as ex:  # noqa: BLE001 - as Faust: logged, the fetch loop goes on
                self.log.warning("exception performing seek when flow not active %s", ex)
            return
        handed = {tp: recs for tp, recs in records.items() if tp.topic in self.handed_off}
        rest = {tp: recs for tp, recs in records.items() if tp.topic not in self.handed_off}

        def deliverable(tp: TP) -> bool:
            return (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            )

        for tp, recs in handed.items():
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            if deliverable(tp):
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                for message in self.fetch_messages(tp, recs):
                    if not self.flow_active or self.app.consumer_generation_id != generation_id:
                        return
                    yield tp, message
                    # Faust's fetch loop set its read offset once the message was taken (it
                    # asks for the next one after that): the read offset is this message's
                    # own only if no seek came in between, and then it was handed on
                    if self._read_offset.get(tp) == message.offset:
                        self.handed[tp] = message.offset
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(rest):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            if deliverable(tp):
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)

    def ack(self, message: Any) -> bool:
        if isinstance(message, FetchMessage):
            return self.ack_fetch(message)
        return super().ack(message)

    def ack_fetch(self, message: FetchMessage) -> bool:
        """The final ack of a fetch: its confirmed offsets not counted yet count as acks of
        their records (``Consumer.ack`` for each), the others are released."""
        with ack_lock:
            if message.acked:
                return False
            counted = self._count(message)
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
            return counted > 0

    def ack_confirmed(self, message: FetchMessage) -> int:
        """Count the ranges of ``message`` confirmed since the last call as acks of their
        records now, before the rest of the fetch is done: a commit then stops where the
        batch ended, as with per-record acks (a fetch split by a batch cut would otherwise
        hold the commit back to its start, and a restart would cut the batches elsewhere)."""
        with ack_lock:
            if message.acked:
                return 0
            counted = self._count(message)
            notify(self._waiting_for_ack)
            return counted

    def _count(self, message: FetchMessage) -> int:
        """(Under ``ack_lock``.) What ``Consumer.ack`` of each record of the confirmed ranges
        not counted yet would do: offsets at or above the committed one, not acked yet."""
        ranges, message.counted = message.confirmed[message.counted :], len(message.confirmed)
        if not ranges or not self.app.topics.acks_enabled_for(message.topic):
            return 0
        tp = message.tp
        committed = self._committed_offset[tp]
        index, acked = self._acked_index[tp], self._acked[tp]
        counted = 0
        for lo, hi in ranges:
            start = lo if committed is None else max(lo, committed)
            new = [o for o in range(start, hi + 1) if o not in index]
            index.update(new)
            acked.extend(new)
            counted += len(new)
        self._n_acked += counted
        return counted


class HandoffTransport(fastpath.FastTransport):
    Consumer = HandoffConsumer


class App(fastpath.App):
    """``faust.App`` whose consumer is a :class:`HandoffConsumer`."""

    def _new_transport(self) -> Any:
        return HandoffTransport(self.conf.broker_consumer, self)


# --- the agent's side -------------------------------------------------------------------
@dataclass(slots=True)
class Piece:
    """Records ``start:stop`` (indices) of the fetch ``event.message``."""

    event: Any
    start: int
    stop: int

    @property
    def message(self) -> FetchMessage:
        return cast(FetchMessage, self.event.message)

    @property
    def records(self) -> Sequence[Any]:
        return self.message.records[self.start : self.stop]

    @property
    def offsets(self) -> tuple[int, int]:
        """First and last offset."""
        first = self.message.first
        return first + self.start, first + self.stop - 1

    def __len__(self) -> int:
        return self.stop - self.start


def cut(pieces: list[Piece], most: int) -> tuple[list[Piece], list[Piece]]:
    """The first ``most`` records of ``pieces`` and the rest (a piece split if need be)."""
    taken: list[Piece] = []
    n = 0
    for i, piece in enumerate(pieces):
        if n + len(piece) <= most:
            taken.append(piece)
            n += len(piece)
            continue
        k = most - n
        if k > 0:
            taken.append(Piece(piece.event, piece.start, piece.start + k))
            rest = [Piece(piece.event, piece.start + k, piece.stop), *pieces[i + 1 :]]
        else:
            rest = pieces[i:]
        return taken, rest
    return taken, []


#: How long an idle :func:`take_records` sleeps between looks at whether the stream stopped
#: (it wakes at once for records or a stop as well).
IDLE_WAKE_S = 1.0


async def take_records(stream: Any, most: int, within: float) -> AsyncIterator[list[Piece]]:
    """``Stream.noack_take`` (faust-streaming 0.15.3) counting records, not messages: lists of
    at most ``most`` records of fetch messages, as soon as there are ``most`` or ``within``
    seconds after the first of them reached the buffer; a fetch is split across two lists
    where the first one is full.

    Unlike ``noack_take``, which waited up to ``within`` after every list whatever was
    waiting, an idle take waits for the first records without a timeout of its own: the
    records that arrived while the agent worked on the previous list (queued in the
    stream's channel) are in the next one within ``within`` of its end, and a worker that
    keeps up runs batches back to back, each as large as what arrived during the last
    (issue 20: a 20 ms wait after every batch was a third of the p99 at half load). The
    ``within`` counts from when the oldest record's fetch was made: records that waited
    that long already, for the batch before to end, are taken with whatever else is queued
    in the channel, without a wait of their own (a worker that keeps up only just paid the
    wait after every batch, where it adds to every record's latency).

    A stopping stream yields nothing more: a batch cut short by the stop, processed and
    committed, would move where every later batch starts (outputs depend on the batches:
    the last trigger of each user in a batch gets a recommendation); unacknowledged, its
    records are read again by the next owner, from a batch end.

    Nothing is acked: the caller finishes every piece (:func:`finish`)."""
    buffer: list[Piece] = []
    count = 0
    buffer_full = asyncio.Event()
    buffer_some = asyncio.Event()
    buffer_consumed = asyncio.Event()
    linger = want_seconds(within) if within else 0.0
    first_at = 0.0  # loop time the oldest record in the buffer reached it
    stream_enable_acks: bool = stream.enable_acks
    buffer_consuming: asyncio.Future[Any] | None = None
    channel_it = stream.channel.__aiter__()

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming, count, first_at
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")  # noqa: TRY301
            message = event.message
            if not isinstance(message, FetchMessage):
                raise TypeError(f"not a fetch: {message!r}")  # noqa: TRY301
            if not count:  # records made long ago waited already (the agent was busy)
                first_at = min(stream.loop.time(), message.made)
            buffer.append(Piece(event, 0, len(message.records)))
            count += len(message.records)
            buffer_some.set()
            if count >= most:
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as Faust: the stream crashes
            stream.log.exception("Error adding to take buffer")
            await stream.crash(exc)
        return value

    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    try:
        while not stream.should_stop:
            if count == 0:
                await stream.wait_for_stopped(buffer_some, timeout=IDLE_WAKE_S)
            left = linger - (stream.loop.time() - first_at)
            if 0 < count < most and left > 0:  # the rest of what is arriving
                await stream.wait_for_stopped(buffer_full, timeout=left)
            elif 0 < count < most:  # they waited: what is queued joins them, nothing more
                await take_queued(stream, buffer_full, linger)
            if stream.should_stop:  # no batch cut by the stop: its records are read again
                if count:
                    log.info("stopping: %d records taken, left for the next reader", count)
                break
            if buffer:
                buffer_consuming = stream.loop.create_future()
                taken, rest = cut(buffer, most)
                try:
                    yield taken
                finally:
                    buffer[:] = rest
                    count = sum(len(p) for p in rest)
                    if count:  # a cut fetch's rest starts the next wait
                        first_at = stream.loop.time()
                    notify(buffer_consuming)
                    if count < most:
                        buffer_full.clear()
                        buffer_consumed.set()
                    if count == 0:
                        buffer_some.clear()
    finally:
        stream.enable_acks = stream_enable_acks
        stream._processors.remove(add_to_buffer)


async def take_queued(stream: Any, full: asyncio.Event, most_s: float) -> None:
    """Event-loop turns until the messages queued in ``stream``'s channel are in the take
    buffer (its processor takes one per turn), the buffer is ``full`` or ``most_s`` passed
    (a channel refilled as fast as it drains is not waited for)."""
    queue = getattr(stream.channel, "queue", None)
    until = stream.loop.time() + most_s
    while queue is not None and queue.qsize() and not full.is_set():  # turns for the processor
        if stream.loop.time() >= until:
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # the message the processor holds now


async def finish(stream: Any, pieces: Sequence[Piece], processed: Sequence[Piece]) -> None:
    """The agent is done with ``pieces``, of which it processed ``processed`` (their offsets
    count for the commit at once, :meth:`HandoffConsumer.ack_confirmed`); a fetch all of
    whose records are done is acked."""
    consumer = stream.app.consumer
    for piece in processed:
        piece.message.confirmed.append(piece.offsets)
    for message in {id(p.message): p.message for p in processed}.values():
        consumer.ack_confirmed(message)
    for piece in pieces:
        message = piece.message
        message.left -= len(piece)
        if message.left == 0:
            await stream.ack(piece.event)
