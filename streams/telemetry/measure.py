"""Measurements the worker takes for its telemetry: consumer lag per partition and the wall
time of each stage of a batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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
    """Wall time per named stage of a batch (``lap`` closes the stage that just ended).

    >>> c = StageClock(0.0, now=iter([1.0, 3.5]).__next__)
    >>> c.lap("a"); c.lap("b"); c.laps
    {'a': 1.0, 'b': 2.5}
    """

    def __init__(self, start: float, now: Callable[[], float] = time.perf_counter) -> None:
        self.last, self.now = start, now
        self.laps: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        t = self.now()
        self.laps[stage] = self.laps.get(stage, 0.0) + t - self.last
        self.last = t
