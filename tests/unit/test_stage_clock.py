"""Stage timings are the batch thread's CPU time (issue 20): waiting is charged to no stage."""

from __future__ import annotations

import asyncio
import threading
import time

from streams.telemetry.measure import StageClock


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_waiting_and_other_threads_are_not_charged_to_a_stage() -> None:
    clock = StageClock(time.perf_counter())
    time.sleep(0.05)  # descheduled: no CPU
    clock.lap("sleep")
    other = threading.Thread(target=burn, args=(0.05,))  # another thread's CPU
    other.start()
    other.join()
    clock.lap("other thread")
    burn(0.02)
    clock.lap("work")
    assert clock.wall["sleep"] >= 0.05 and clock.laps["sleep"] < 0.01
    assert clock.wall["other thread"] >= 0.05 and clock.laps["other thread"] < 0.01
    assert 0.02 <= clock.laps["work"] < 0.04


async def test_aside_keeps_other_coroutines_out_of_the_stage() -> None:
    async def busy() -> None:
        burn(0.03)

    clock = StageClock(time.perf_counter())
    task = asyncio.ensure_future(busy())
    with clock.aside():
        for _ in range(2):
            await asyncio.sleep(0)
    burn(0.01)
    clock.lap("users")
    await task
    assert clock.aside_s >= 0.03
    assert 0.01 <= clock.laps["users"] < 0.025
