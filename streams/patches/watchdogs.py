"""Watchdogs over faust-streaming's consumer: records that never reach the agent, and commits
that stop moving. Both only ever observed in fault tests; they make such a fault loud (and
the commit stall repaired) instead of silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class SkippedRecords:
    """Notices records that never reached the agent: an offset past the next one expected.

    Offsets of the events topic are consecutive (no compaction, no transactions), so a batch
    whose record for a partition is past the one after the last record seen there means the
    consumer dropped records in between — silently, and Faust may then commit past them.
    streams/patches/recovery.py fixes the one cause we found; this check makes any other one loud.
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
#: how long the broker may take to answer the watchdog's probe
PROBE_TIMEOUT_S = 4.0


class CommitWatchdog:
    """Notices when Faust stops committing offsets although batches are acked, and repairs it.

    Seen in fault injection (kill -9 then restart): now and then the restarted worker acks
    every record but Faust's committed offset never moves again (its commit logic waits for
    an offset that it will never see acked). Nothing is lost (every effect is fenced), but a
    later restart would replay everything since. After ``WATCHDOG_STRIKES`` checks with
    processed offsets ahead of a committed offset that does not move, the watchdog logs an
    error and seeks the consumer back to the committed offsets: the records since then are
    delivered and acked again (their effects are fenced), which lets commits resume.

    Commits also stop while the broker is unreachable; that is not the stall above, and
    seeking back then only replays records (and cuts the following batches elsewhere than a
    run without the outage would). So a strike counts only when ``probe`` -- a request to
    the broker, e.g. the group's committed offsets -- answers within ``PROBE_TIMEOUT_S``;
    a probe that fails starts the count again.
    """

    def __init__(
        self, app: Any, on_stall: Callable[[], None] = lambda: None,
        probe: Callable[[], Awaitable[object]] | None = None,
    ) -> None:  # fmt: skip
        self.app = app  # the faust.App
        self.on_stall = on_stall  # counts the stall (shopstream_commit_stalls_total)
        self.probe = probe  # None: every check counts (unit tests of the counting)
        self.acked: dict[Any, int] = {}
        self.last: dict[Any, int | None] = {}
        self.strikes = 0

    def processed(self, batch: Sequence[Any]) -> None:
        """Faust events of a processed batch."""
        self.processed_ranges((e.message.tp, e.message.offset, e.message.offset) for e in batch)

    def processed_ranges(self, ranges: Iterable[tuple[Any, int, int]]) -> None:
        """Processed offset ranges ``(tp, first, last)`` (the fetches of the batch
        hand-off, streams/patches/handoff.py)."""
        acked = self.acked
        for tp, _, last in ranges:
            if last > acked.get(tp, -1):
                acked[tp] = last

    async def check(self) -> None:
        consumer = self.app.consumer
        committed_by_tp = getattr(consumer, "_committed_offset", {})  # read only
        assigned = consumer.assignment()
        stalled = {}
        for tp, acked in self.acked.items():
            committed = committed_by_tp.get(tp)
            if tp in assigned and committed is not None and acked + 1 > committed:
                if self.last.get(tp) == committed:
                    stalled[tp] = (committed, acked)
            self.last[tp] = committed
        if stalled and not await self.broker_answers():
            log.info("offset commits wait for the broker (unreachable); not a commit stall")
            stalled = {}
        self.strikes = self.strikes + 1 if stalled else 0
        if self.strikes >= WATCHDOG_STRIKES:
            log.error(
                "offset commits stalled (committed, processed): %s; seeking back to the "
                "committed offsets (replayed records are fenced)",
                {f"{tp.topic}[{tp.partition}]": v for tp, v in stalled.items()},
            )
            self.strikes = 0
            self.on_stall()
            try:
                await consumer.perform_seek()
            except Exception:  # e.g. the broker is unreachable: try again next time
                log.exception("seeking back to the committed offsets failed")

    async def broker_answers(self) -> bool:
        """Whether the broker answered ``probe`` in time (``True`` without a probe)."""
        if self.probe is None:
            return True
        try:
            await asyncio.wait_for(self.probe(), PROBE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - unreachable, timed out, refused: all "no"
            return False
        return True
