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
