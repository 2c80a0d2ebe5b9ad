"""Measurements the worker takes for its telemetry: consumer lag per partition and the thread
CPU time (and wall time) of each stage of a batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def consumer_lag(highwater: Callable[[Any], int | None], positions: Mapping[Any, int]) -> int:
    """Total lag: for each partition, high watermark minus (last processed offset + 1).

    >>> consumer_lag({"p0": 100, "p1": None}.get, {"p0": 89, "p1": 5})
    10
    """
    return sum(partition_lags(highwater, positions).values())


def partition_lags(
    highwater: Callable[[Any], int | None], positions: Mapping[Any, int]
) -> dict[Any, int]:
    """Lag per partition (those with a known high watermark); keys as in ``positions``.

    >>> partition_lags({"p0": 100, "p1": None}.get, {"p0": 89, "p1": 5})
    {'p0': 10}
    """
    out = {}
    for tp, offset in positions.items():
        hw = highwater(tp)
        if hw is not None and hw >= 0:
            out[tp] = max(hw - offset - 1, 0)
    return out


class StageClock:
    """CPU time of this thread per named stage of a batch (``lap`` closes the stage that just
    ended); wall time per stage alongside, in ``wall``.

    Thread CPU time (``time.thread_time``) leaves out the time this thread waits or is
    descheduled while Kafka, Redis and other processes use the cores, so a stage costs the
    same on a busy box as on an idle one. It still includes what *other coroutines of the
    same event loop* run while a stage awaits (Faust's delivery during ``sleep(0)`` turns):
    wrap such awaits in :meth:`aside` to charge them to no stage.

    >>> c = StageClock(0.0, now=iter([1.0, 3.5]).__next__, cpu=iter([0.0, 0.5, 1.5]).__next__)
    >>> c.lap("a"); c.lap("b"); c.laps, c.wall
    ({'a': 0.5, 'b': 1.0}, {'a': 1.0, 'b': 2.5})
    """

    def __init__(
        self,
        start: float,
        now: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.thread_time,
    ) -> None:
        self.last, self.now = start, now
        self.cpu = cpu
        self.cpu_last = cpu()
        self.laps: dict[str, float] = {}  # thread CPU seconds per stage
        self.wall: dict[str, float] = {}  # wall seconds per stage
        self.aside_s = 0.0  # thread CPU inside aside(), charged to no stage

    def lap(self, stage: str) -> None:
        t, c = self.now(), self.cpu()
        self.laps[stage] = self.laps.get(stage, 0.0) + c - self.cpu_last
        self.wall[stage] = self.wall.get(stage, 0.0) + t - self.last
        self.last, self.cpu_last = t, c

    @contextmanager
    def aside(self) -> Iterator[None]:
        """CPU time spent inside (e.g. awaits that let other coroutines run) goes to no stage.

        >>> c = StageClock(0.0, now=lambda: 0.0, cpu=iter([0.0, 1.0, 3.0, 3.5]).__next__)
        >>> with c.aside():
        ...     pass
        >>> c.lap("a"); c.laps["a"], c.aside_s
        (1.5, 2.0)
        """
        before = self.cpu()
        try:
            yield
        finally:
            spent = self.cpu() - before
            self.aside_s += spent
            self.cpu_last += spent


class SlowBatches:
    """A log line for a batch slower than ``threshold_s`` (wall time), saying where the time
    went: wall and thread CPU milliseconds of its slowest stages, and how long its oldest
    record had waited before the batch began (a stall *between* batches shows there, not in
    the stages). At most one line per ``every_s``; the line counts the slow batches not
    reported since the last one.

    >>> slow = SlowBatches(0.1, every_s=10.0, clock=iter([0.0, 1.0, 20.0]).__next__)
    >>> print(slow.report(1000, {"users": 0.02, "publish": 0.004},
    ...                   {"users": 0.03, "publish": 0.09}, waited_s=0.25))
    ... # doctest: +NORMALIZE_WHITESPACE
    slow batch: 1,000 records in 120 ms (wall/CPU ms: publish 90/4, users 30/20); its oldest
    record waited 250 ms before it
    >>> slow.report(10, {"users": 0.001}, {"users": 0.2}) is None  # within every_s: counted
    True
    >>> slow.report(10, {"users": 0.001}, {"users": 0.002}) is None  # fast
    True
    >>> slow.report(10, {"users": 0.001}, {"users": 0.15})
    'slow batch: 10 records in 150 ms (wall/CPU ms: users 150/1); 1 more since the last line'
    """

    def __init__(
        self, threshold_s: float = 0.1, every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.threshold_s, self.every_s, self.clock = threshold_s, every_s, clock
        self.reported_at: float | None = None
        self.unreported = 0

    def report(
        self, records: int, cpu: Mapping[str, float], wall: Mapping[str, float],
        waited_s: float | None = None, stages: int = 3,
    ) -> str | None:  # fmt: skip
        """The line to log for this batch, or None (fast, or a line was logged recently)."""
        total = sum(wall.values())
        if total < self.threshold_s:
            return None
        now = self.clock()
        if self.reported_at is not None and now - self.reported_at < self.every_s:
            self.unreported += 1
            return None
        self.reported_at = now
        top = sorted(wall, key=lambda s: -wall[s])[:stages]
        where = ", ".join(f"{s} {wall[s] * 1000:.0f}/{cpu.get(s, 0.0) * 1000:.0f}" for s in top)
        line = f"slow batch: {records:,} records in {total * 1000:.0f} ms (wall/CPU ms: {where})"
        if waited_s is not None:
            line += f"; its oldest record waited {waited_s * 1000:.0f} ms before it"
        if self.unreported:
            line += f"; {self.unreported} more since the last line"
            self.unreported = 0
        return line
