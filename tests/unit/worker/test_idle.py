"""Idle partitions follow the wall clock: the target clock, as a pure function of time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.worker.idle import idle_target

S = 1_000  # ms per second


def test_off_and_not_yet_idle_leave_the_clock_alone() -> None:
    assert idle_target(100.0, 5 * S, now_s=1e9, idle_s=0.0) is None  # option off
    assert idle_target(100.0, 5 * S, now_s=159.9, idle_s=60.0) is None  # quiet for 59.9 s


def test_live_traffic_reaches_the_wall_clock_minus_the_idle_time() -> None:
    last_record_s = 1_800_000_000.0  # its event time is its wall time
    for later in (60.0, 61.0, 3600.0, 14 * 86_400.0):
        now = last_record_s + later
        assert idle_target(last_record_s, int(last_record_s * S), now, 60.0) == int((now - 60) * S)


def test_a_replay_of_old_data_advances_by_the_wall_time_that_passed_never_to_now() -> None:
    old_ms = 1_300_000_000_000  # 2011
    got = idle_target(1_800_000_000.0, old_ms, now_s=1_800_000_600.0, idle_s=60.0)
    assert got == old_ms + 540 * S  # ten minutes later: nine minutes of event time


@given(
    anchor=st.floats(0, 2e9), clock=st.integers(0, 4 * 10**12), later=st.floats(0, 1e7),
    idle=st.floats(0.1, 1e4),
)  # fmt: skip
def test_never_past_the_watermark_and_monotone_in_time(
    anchor: float, clock: int, later: float, idle: float
) -> None:
    now = anchor + later
    a, b = idle_target(anchor, clock, now, idle), idle_target(anchor, clock, now + 1.0, idle)
    if a is not None:
        assert a <= (now - idle) * S + 1  # the watermark (1 ms of float rounding)
        assert a <= clock + (later - idle) * S + 1  # no faster than the wall clock
        assert b is not None and b >= a  # time only moves it on
