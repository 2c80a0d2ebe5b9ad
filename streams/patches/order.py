"""Records reach the batch in offset order, without holes: the offset fences rely on it.

Every fence of shopstream is a high-water mark per source partition (the similarity and KPI
stores' offsets in Redis, the per-user envelope fence): a record at or below it counts as
applied. That is exactly-once only if no record is ever skipped on the way up. Faust can skip
one without a trace: records dropped between its fetcher and the agent (a rebalance racing a
delivery; faust-streaming 0.15.3 then even acks the dropped record, or marks the jump as a
"gap" to commit past). A later record of the partition moved every fence past the skipped
ones, so when they came back (a seek to the committed offset, a restart) they were taken for
redeliveries and their effects were lost for good: tests/integration/test_scale_out.py, a
worker joining mid-stream, lost a whole session's effects that way (docs/reliability.md).

:class:`RecordOrder` holds the next offset the batch expects of each partition (from the
committed offset the worker started the partition at, then from every record it admits). A
record past it is a hole: it is not processed, nor are the partition's later offsets, and the
caller seeks the partition back to the first missing offset, so the missing records come
again, in order. If a fetch of its own from the first missing offset
(``streams.agents.probe``) shows that the log's next record comes after the hole, the hole is
in the log itself (a transactional producer's commit markers, compaction, retention): it is
accepted at once. Without that proof a hole is never accepted: records that exist would be
lost. Records past it that keep arriving after a seek were fetched before it (Faust's fetch
in progress and the agent's stream buffer hold up to ``backlog`` of them, ahead of the
records asked for again), so they do not count against the seek; a partition that brings
nothing for :data:`RESEEK_S` after a seek, or more than ``backlog`` records past the hole, is
sought again; a hole still open :data:`HOLE_DEADLINE_S` after it was found stops the worker
(streams.agents.events), which resumes at the committed offset, before the hole.

>>> order = RecordOrder(lambda p: {0: 10}.get(p))
>>> admit = lambda recs, now: order.admit(recs, now, recs)
>>> admit([(0, 9), (0, 10), (0, 13), (0, 14), (1, 4)], now=0.0)
([(0, 9), (0, 10), (1, 4)], [(0, 11, 13)])
>>> admit([(0, 14)], now=1.0)  # a record fetched before the seek: no second seek yet
([], [])
>>> admit([(0, 11), (0, 12), (0, 13)], now=1.5)
([(0, 11), (0, 12), (0, 13)], [])
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.types.tuples import ack_lock

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a partition may deliver nothing after a seek back to a hole before it is sought
#: again (records past the hole arriving meanwhile were fetched before the seek).
RESEEK_S = 2.0
#: Seconds a hole whose records may be in the log (no fetch proved them absent) may stay
#: open before the worker stops rather than go on without them.
HOLE_DEADLINE_S = 60.0
#: Records past a hole that may still arrive after a seek back to it, fetched before it (the
#: fetch Faust is handing on and the agent's stream buffer), unless told (streams.agents.events)
BACKLOG = 20_000
#: Seconds an assigned partition with records in its log may deliver none before it is
#: sought to its start again (streams.agents.events).
FIRST_RECORD_S = 10.0
#: Seconds :meth:`GuardedConsumer.perform_seek` waits for the log start of a partition
#: without a committed offset.
LOG_START_TIMEOUT_S = 15.0


@dataclass(slots=True)
class Hole:
    """A partition waiting for its records from ``start`` (seen up to ``seen`` instead)."""

    start: int
    seen: int
    sought_at: float
    seeks: int = 1
    #: when the hole was found (:data:`HOLE_DEADLINE_S`)
    found_at: float | None = None
    #: when a record past it last arrived (fetched before the last seek)
    heard_at: float | None = None

    def __post_init__(self) -> None:
        if self.found_at is None:
            self.found_at = self.sought_at

    def quiet_since(self) -> float:
        """Since when nothing of the partition arrived after the last seek."""
        return max(self.sought_at, self.heard_at or self.sought_at)


@dataclass
class RecordOrder:
    """The next offset expected of each partition; the holes being re-read.

    ``start(partition)``: the offset the worker starts a newly assigned partition at (the
    group's committed offset, or the log start for a partition without one), ``None`` if
    unknown: then the first record sets it.
    """

    start: Callable[[int], int | None]
    #: ``verified(partition, offset)``: the first offset at or after ``offset`` in the
    #: partition's log, as an independent fetch found it (``None``: not known)
    verified: Callable[[int, int], int | None] = lambda partition, offset: None
    #: records past a hole that may still arrive after a seek back to it (:data:`BACKLOG`)
    backlog: int = BACKLOG
    expected: dict[int, int] = field(default_factory=dict)
    holes: dict[int, Hole] = field(default_factory=dict)
    #: holes accepted as part of the log: (partition, first missing, first present)
    accepted: list[tuple[int, int, int]] = field(default_factory=list)
    #: the last :meth:`stuck` check (monotonic seconds)
    checked_at: float | None = None

    def forget(self, partition: int) -> None:
        """The partition was revoked: its next owner (maybe us again) starts afresh."""
        self.expected.pop(partition, None)
        self.holes.pop(partition, None)

    def admit(
        self, records: Sequence[tuple[int, int]], now: float, items: Sequence[T]
    ) -> tuple[list[T], list[tuple[int, int, int]]]:
        """``(records to process, holes to seek back to)`` of a batch of ``(partition,
        offset)``, as the ``items`` they stand for (same order).

        A hole is ``(partition, first missing offset, offset seen)``; the caller seeks the
        partition to the first missing offset. Records at or below the expected offset are
        redeliveries (fenced downstream) and are kept."""
        return self.admit_ranges([(p, o, o) for p, o in records], now, items)

    def admit_ranges(
        self, ranges: Sequence[tuple[int, int, int]], now: float, items: Sequence[T]
    ) -> tuple[list[T], list[tuple[int, int, int]]]:
        """:meth:`admit` of runs of consecutive offsets ``(partition, first, last)`` (the
        fetches of the batch hand-off, streams/patches/handoff.py): a run is kept or held
        back whole, as its records would be one by one (no hole can be inside a run).

        >>> order = RecordOrder(lambda p: {0: 10}.get(p))
        >>> order.admit_ranges([(0, 8, 12), (0, 15, 16), (1, 4, 6)], 0.0, "abc")
        (['a', 'c'], [(0, 13, 15)])
        >>> order.admit_ranges([(0, 13, 16)], 1.0, "d"), order.expected
        ((['d'], []), {0: 17, 1: 7})
        """
        kept: list[T] = []
        seek: list[tuple[int, int, int]] = []
        for (partition, first, last), item in zip(ranges, items, strict=True):
            want = self.expected.get(partition)
            if want is None:
                want = self.start(partition)
                want = first if want is None or want < 0 else want
                self.expected[partition] = want
            # a record held back does not hold back the partition's next ones in the batch:
            # after a seek back, the last records fetched before it and the first ones asked
            # for again share a batch (those are lower: each is checked on its own)
            if first > want and not self._accept(partition, want, first, now, seek):
                continue
            if last >= self.expected[partition]:
                self.expected[partition] = last + 1
                self.holes.pop(partition, None)
            kept.append(item)
        return kept, seek

    def read_again(
        self, partition: int, offset: int, *, sought: bool, begin: int | None, now: float
    ) -> bool:
        """``partition`` is to be read again from ``offset`` (where its stored models are,
        streams.worker.undo); whether the consumer must be sought back there now.

        Not if its first seek went there (``sought``), nor if nothing of it was read yet
        and it starts at or before ``offset`` (``begin``: the committed offset, when the
        models were stored after the last commit): the records before ``offset`` are
        redeliveries (fenced), and a seek back once later records were fetched would read
        those twice, in batches cut elsewhere than the first time (issue 15: the 100k-event
        kill test then published recommendations for other triggers than a clean run).
        After the first seek there, records fetched from the committed offset before it may
        still arrive first: they are held back as after any seek back (:meth:`replay`).

        >>> order = RecordOrder(lambda p: 1000)  # the committed offset
        >>> order.read_again(0, 1500, sought=False, begin=1000, now=0.0)  # models at 1500
        False
        >>> order.admit([(0, 1000), (0, 1001)], 0.0, ["r1000", "r1001"])
        (['r1000', 'r1001'], [])
        >>> order.read_again(1, 1500, sought=True, begin=2000, now=0.0), order.expected[1]
        (False, 1500)
        >>> order.admit([(1, 2000)], 0.5, ["r2000"])  # fetched before the first seek
        ([], [])
        >>> order.read_again(0, 900, sought=False, begin=1000, now=0.0)  # read past it: seek
        True
        """
        if sought:
            self.replay(partition, offset, now)
            if begin is not None:  # the consumer fetched from there before the seek
                hole = self.holes[partition]
                hole.seen = max(hole.seen, begin - 1)
            return False
        if partition not in self.expected and begin is not None and begin <= offset:
            return False
        self.replay(partition, offset, now)
        return True

    def replay(self, partition: int, offset: int, now: float) -> None:
        """``partition`` is sought back to ``offset`` to be read again from there: later
        records fetched before the seek are held back like those past a hole.

        >>> order = RecordOrder(lambda p: 0)
        >>> order.admit([(0, 0), (0, 1), (0, 2)], 0.0, ["r0", "r1", "r2"])[0]
        ['r0', 'r1', 'r2']
        >>> order.replay(0, 1, 1.0)
        >>> order.admit([(0, 3)], 1.0, ["r3"])  # fetched before the seek
        ([], [])
        >>> order.admit([(0, 1), (0, 2), (0, 3)], 1.5, ["r1", "r2", "r3"])
        (['r1', 'r2', 'r3'], [])
        """
        read = self.expected.get(partition, offset) - 1  # records up to it were fetched
        self.expected[partition] = offset
        self.holes[partition] = Hole(offset, max(offset, read), now)

    def overdue(self, now: float) -> list[tuple[int, int]]:
        """``(partition, first missing offset)`` of the holes sought back to :data:`RESEEK_S`
        ago whose partition delivered nothing since (records past the hole arriving after a
        seek were fetched before it: the records asked for again come after them): to seek
        again, now.

        >>> order = RecordOrder(lambda p: 3)
        >>> order.admit([(0, 9)], 0.0, ["r9"]), order.overdue(1.0), order.overdue(RESEEK_S)
        (([], [(0, 3, 9)]), [], [(0, 3)])
        >>> order.admit([(0, 10)], 3.0, ["r10"]), order.overdue(4.0)  # fetched before it
        (([], []), [])
        """
        out = []
        for partition, hole in self.holes.items():
            if now - hole.quiet_since() >= RESEEK_S:
                hole.sought_at, hole.seeks = now, hole.seeks + 1
                out.append((partition, hole.start))
        return out

    def stuck(self, now: float, busy: bool = False) -> list[tuple[int, int, int, int]]:
        """``(partition, first missing offset, offset seen, seeks)`` of the holes open for
        :data:`HOLE_DEADLINE_S` or more: their records are neither delivered nor proven
        absent from the log. Going on past them would lose them for good (every fence would
        pass them): the worker must stop instead. Time during which the agent was ``busy``
        (in a batch, e.g. retrying through a Redis outage: nothing can arrive) since the
        last call does not count.

        >>> order = RecordOrder(lambda p: 3)
        >>> order.admit([(0, 9)], 0.0, ["r9"])[1], order.stuck(HOLE_DEADLINE_S / 2)
        ([(0, 3, 9)], [])
        >>> order.stuck(HOLE_DEADLINE_S, busy=True), order.stuck(HOLE_DEADLINE_S * 1.5)
        ([], [(0, 3, 9, 1)])
        """
        if busy and self.checked_at is not None:
            for hole in self.holes.values():
                found = now if hole.found_at is None else hole.found_at
                hole.found_at = found + now - self.checked_at
        self.checked_at = now
        return [(p, h.start, h.seen, h.seeks) for p, h in self.holes.items()
                if h.found_at is not None and now - h.found_at >= HOLE_DEADLINE_S]  # fmt: skip

    def _accept(
        self, partition: int, want: int, offset: int, now: float, seek: list[tuple[int, int, int]]
    ) -> bool:
        """Whether a record past the expected offset is processed (the hole is accepted as
        part of the log: proven by an independent fetch); otherwise the hole is noted and
        maybe sought."""
        hole = self.holes.get(partition)
        if hole is None or hole.start != want:
            self.holes[partition] = Hole(want, offset, now)
            seek.append((partition, want, offset))
            return False
        first = self.verified(partition, want)
        if first is not None and want < first <= offset:
            log.debug("partition %d: offsets %d..%d are not in the log: a fetch from %d got "
                     "%d first (a transaction marker, compaction)", partition, want, first - 1,
                     want, first)  # fmt: skip
            self.accepted.append((partition, want, first))
            del self.holes[partition]
            self.expected[partition] = first
            return offset == first or self._accept(partition, first, offset, now, seek)
        # fetched before the last seek (the records asked for again come after it), unless
        # more came than the fetch pipeline holds: then the seek was lost, seek again
        hole.heard_at = now
        if offset - hole.seen > self.backlog:
            hole.seeks, hole.sought_at, hole.seen = hole.seeks + 1, now, offset
            seek.append((partition, want, offset))
        return False


class GuardedConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer that, for the ``guarded`` topics (the events topic), commits
    only what the agent processed:

    * an ack counts only for a message the agent confirmed (:meth:`confirm`). Faust also acks the
      messages its stream *skips* (fetched in an older generation, or while flow control is
      suspended), which moved the commit past records nothing processed; such a message is
      released (nothing waits for it any more) and left for a re-read;
    * a jump in the fetched offsets is not marked as a "gap" to commit past (Faust's handling
      of compacted or transactional topics): the agent re-reads the missing records
      (:class:`RecordOrder`) and marks a hole that really is in the log
      (:meth:`accept_gap`).
    """

    guarded: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.confirmed: set[tuple[TP, int]] = set()
        #: where a guarded partition starts after an assignment, if not at the committed
        #: offset (``None``); an earlier offset only
        self.start_at: Callable[[TP], int | None] = lambda tp: None
        #: the log start of a guarded partition, if the agent knows it (read at assignment;
        #: ``None``: asked of the broker when needed, :meth:`seek_uncommitted`)
        self.log_start: Callable[[TP], int | None] = lambda tp: None
        #: where :meth:`perform_seek` started a partition because :attr:`start_at` said so
        self.started_at: dict[TP, int] = {}
        #: the committed offset :meth:`perform_seek` found for each partition (``None``:
        #: none, it starts at the log start), kept apart from :meth:`commit_back`'s
        self.began_at: dict[TP, int | None] = {}
        #: guarded partitions kept paused until :meth:`perform_seek` sought them where
        #: :attr:`start_at` says (:meth:`resume_partitions`), while an assignment's seek is due
        self.held_back: set[TP] = set()
        self.seek_due = False
        self.read_offsets = ReadOffsets(self._read_offset)
        self._read_offset = self.read_offsets  # the one Faust's fetch loop reads and sets

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        self.seek_due = True  # before Faust's recovery resumes the stream partitions
        await super().on_partitions_assigned(assigned, generation_id)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Faust's, except that while an assignment's seek is due, a guarded partition that
        :attr:`start_at` starts elsewhere than its committed offset stays paused until
        :meth:`perform_seek` sought it there. Faust's recovery resumes the stream partitions
        *before* that seek, so its fetch loop handed on records from the committed offset
        first, ahead of the re-read: held back, they cut the re-read's batches elsewhere
        than the first time (the review of 2026-12-02: committed 1000, models at 499, a
        stale fetch of 734 records, then batches of 266, 500, 500...). So does one without a
        committed offset known (:meth:`seek_uncommitted` may seek it back to its log start)."""
        tps = set(tps)
        held = {tp for tp in tps if self.seek_due and tp.topic in self.guarded
                and (self.start_at(tp) is not None
                     or self._committed_offset.get(tp) is None)}  # fmt: skip
        self.held_back |= held
        super().resume_partitions(tps - held)

    async def rewind(self, tp: TP, offset: int) -> None:
        """Fetch ``tp`` again from ``offset``: records fetched before (later offsets) may
        still be delivered, they must not move Faust's read offset past the re-read ones."""
        self.read_offsets.rewinding[tp] = offset
        await self.seek_wait({tp: offset})
        self._read_offset[tp] = offset

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets (after each assignment's recovery, and the
        commit watchdog's repair), then the guarded partitions that :attr:`start_at` names to
        that offset instead (a partition read again from its stored models,
        streams.worker.undo), and those being re-read back to their re-read (:meth:`rewind`).

        Such a partition is held like a :meth:`rewind`: Faust's fetch loop may already be
        handing on records it fetched from the committed offset (stream partitions are
        resumed before this seek), and their offsets must not move its read offset past
        the records asked for again, or it drops those (seen: a restart whose group had
        committed 1000 re-read from 500; the records 1000.. fetched before the seek came
        first, and 500..999 never reached the agent). The seek goes through the consumer's
        thread (``seek_wait``): Faust's ``seek`` calls aiokafka from this thread, racing the
        fetches running in that one. :attr:`start_at` is planned in
        ``on_partitions_assigned``, which Faust runs side by side with the table's recovery:
        the recovery waits for it before this seek (streams/patches/recovery.py)."""
        read_before = dict(self._read_offset)
        try:
            await super().perform_seek()
            self.started_at = {}
            assigned = self.assignment()
            self.began_at = {tp: self._committed_offset.get(tp) for tp in assigned}
            for tp in assigned:
                offset = self.start_at(tp) if tp.topic in self.guarded else None
                committed = self._committed_offset.get(tp)
                if offset is not None and committed is not None and offset < committed:
                    await self.rewind(tp, offset)  # (no commit yet: it starts at the log start)
                    self.started_at[tp] = offset
            for tp, offset in list(self.read_offsets.rewinding.items()):
                committed = self._committed_offset.get(tp)
                if tp not in assigned:
                    self.read_offsets.rewinding.pop(tp, None)
                elif tp not in self.started_at and (committed is None or offset < committed):
                    await self.rewind(tp, offset)  # not past a re-read under way
            await self.seek_uncommitted(assigned, read_before)
        finally:  # sought (or failed: then they fetch from where they are, as before)
            self.seek_due = False
            held, self.held_back = self.held_back, set()
            if held:
                super().resume_partitions(held)

    async def seek_uncommitted(
        self, assigned: Iterable[TP], read_before: dict[TP, int | None]
    ) -> None:
        """Guarded partitions without a committed offset go back to their log start, as one
        with a committed offset goes back to it: aiokafka's ``seek_to_committed`` leaves such
        a partition where its fetches moved it, past records it fetched that Faust then
        dropped (a fetch while the flow was stopped, the recovery's clear of the buffers).
        Seen in the chaos test of a crash between the changelog write and the publish (1 in
        6 runs): the first worker had committed nothing, the restarted one fetched 0..1999
        before its first seek, and its first records to reach the agent were 2000.. ("records
        skipped by the consumer: offsets 500..1999"). Partitions already sought (a re-read
        from the stored models, a hole being re-read) keep their seek. ``read_before``:
        Faust's read offsets before its seek (which sets them to ``None`` here).

        Such a partition is also held back from the assignment's resume until this seek
        (:meth:`resume_partitions`): a fetch in between would bring records past the ones
        dropped, ahead of them. Not while the flow is stopped (Faust's ``getmany`` seeks
        then, during a rebalance): the assignment's own seek follows."""
        if not self.flow_active:  # a rebalance under way: the assignment's seek does it
            return
        tps = [tp for tp in assigned if tp.topic in self.guarded
               and self._committed_offset.get(tp) is None and tp not in self.started_at
               and tp not in self.read_offsets.rewinding]  # fmt: skip
        starts: dict[TP, int] = {}
        for tp in tps:
            start = self.log_start(tp)
            if start is not None:
                starts[tp] = start
        unknown = [tp for tp in tps if tp not in starts]
        if unknown:
            try:
                asked = await asyncio.wait_for(self.earliest_offsets(*unknown),
                                               LOG_START_TIMEOUT_S)  # fmt: skip
                starts.update({tp: int(offset) for tp, offset in asked.items()})
            except Exception as exc:  # noqa: BLE001 - the agent's RecordOrder finds a hole
                log.warning("could not read the log start of %s to seek there: %r",
                            unknown, exc)  # fmt: skip
        for tp in tps:
            if tp not in starts:
                continue
            start, read = starts[tp], read_before.get(tp)
            if read is not None and read > start:  # the case this is for: say so
                log.info("%s: no committed offset, and read up to %d before the assignment's "
                         "seek: sought back to its log start %d", tp, read, start)  # fmt: skip
            try:
                await self.rewind(tp, start)
            except BaseException:
                self.read_offsets.rewinding.pop(tp, None)  # not sought: no floor left behind
                raise

    async def commit_back(self, offsets: dict[TP, int]) -> bool:
        """Commit ``offsets`` below the committed ones (a partition read again from a model
        checkpoint, streams.worker.undo): Faust's own commits only move forward, and its
        acks below the committed offset are ignored. From here the commits follow the
        re-read, so a stop, a crash or a rebalance in the middle of it resumes it, never
        skips what is left of it."""
        if offsets and await self._commit(offsets):
            self._committed_offset.update(offsets)
            return True
        return not offsets

    def rewinding(self) -> list[TP]:
        return list(self.read_offsets.rewinding)

    def rewound(self, tp: TP) -> None:
        """The re-read of ``tp`` reached its first missing record (or was given up)."""
        self.read_offsets.rewinding.pop(tp, None)

    def guard(self, *topics: str) -> None:
        self.guarded = frozenset(topics)

    def committed_offset(self, tp: TP) -> int | None:
        """The committed offset Faust started ``tp`` at (set at every assignment); ``None``:
        none known (a new group; Faust also keeps offset 0 as ``None``)."""
        offset: int | None = self._committed_offset.get(tp)
        return offset

    def confirm(self, message: Any) -> None:
        """The agent processed ``message``: its ack (next) counts for the commit."""
        self.confirmed.add((message.tp, message.offset))

    def ack(self, message: Any) -> bool:
        if message.topic not in self.guarded:
            return bool(super().ack(message))
        key = (message.tp, message.offset)
        if key in self.confirmed:
            self.confirmed.discard(key)
            if super().ack(message):
                return True
            with ack_lock:  # below the committed offset (a partition read again): nothing
                self._unacked_messages.discard(message)  # to commit, nothing to wait for
            return False
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)
        return False

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic not in self.guarded:
            await super()._add_gap(tp, offset_from, offset_to)

    async def accept_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Offsets ``offset_from..offset_to`` of ``tp`` are not in the log: commit past them."""
        await super()._add_gap(tp, offset_from, offset_to)


class ReadOffsets(defaultdict[TP, "int | None"]):
    """Faust's read offsets (the last offset its fetch loop handed on, per partition), which
    hold while a partition is re-read (:meth:`GuardedConsumer.rewind`): the fetch loop
    drops every fetched record below the read offset, so records fetched before the seek
    must not move it past the records asked for again.

    >>> offsets = ReadOffsets({})
    >>> offsets.rewinding["tp"] = 5
    >>> offsets["tp"] = 5; offsets["tp"] = 12; offsets["tp"]
    5
    >>> del offsets.rewinding["tp"]; offsets["tp"] = 12; offsets["tp"]
    12
    """

    def __init__(self, offsets: Any) -> None:
        super().__init__(lambda: None, offsets)
        self.rewinding: dict[TP, int] = {}

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        floor = self.rewinding.get(tp)
        if floor is not None and (offset is None or offset > floor):
            return
        super().__setitem__(tp, offset)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """As ``dict.update``, but through :meth:`__setitem__` (Faust's ``perform_seek``
        sets the read offsets so: it must not lift a partition being re-read either)."""
        for tp, offset in dict(*args, **kwargs).items():
            self[tp] = offset


class GuardedTransport(aiokafka_driver.Transport):
    Consumer = GuardedConsumer


class App(faust.App):
    """``faust.App`` whose consumer is a :class:`GuardedConsumer`."""

    def _new_transport(self) -> Any:
        return GuardedTransport(self.conf.broker_consumer, self)
