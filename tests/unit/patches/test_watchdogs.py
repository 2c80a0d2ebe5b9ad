"""The commit watchdog: a stall counts only while the broker answers (issue 15).

A broker outage longer than ``WATCHDOG_STRIKES`` checks used to look like Faust's commit
stall: the watchdog sought back, records were replayed, and the batches after the outage were
cut elsewhere than in a run without it (a clean-clone ``make chaos`` saw 17 recommendation
triggers missing in ``test_kafka_broker_restart_mid_stream``).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace as NS
from typing import Any, NamedTuple

from streams.patches.watchdogs import WATCHDOG_STRIKES, CommitWatchdog


class TopicPartition(NamedTuple):
    topic: str
    partition: int


TP = TopicPartition("shop.events", 0)


class FakeConsumer:
    """Faust's consumer as the watchdog sees it: a committed offset that does not move."""

    def __init__(self, committed: int) -> None:
        self._committed_offset = {TP: committed}
        self.seeks = 0

    def assignment(self) -> set[Any]:
        return {TP}

    async def perform_seek(self) -> None:
        self.seeks += 1


def stalled_watchdog(probe: Any) -> tuple[CommitWatchdog, FakeConsumer]:
    consumer = FakeConsumer(committed=100)
    dog = CommitWatchdog(NS(consumer=consumer), probe=probe)
    dog.processed([NS(message=NS(tp=TP, offset=499))])  # acked far past the committed 100
    return dog, consumer


async def unreachable() -> None:
    raise ConnectionError("broker down")


async def reachable() -> dict[int, int]:
    return {0: 100}


async def hanging() -> None:
    await asyncio.sleep(3600)


def checks(dog: CommitWatchdog, n: int) -> None:
    async def run() -> None:
        for _ in range(n):
            await dog.check()

    asyncio.run(run())


def test_a_stall_while_the_broker_answers_is_repaired() -> None:
    dog, consumer = stalled_watchdog(reachable)
    checks(dog, WATCHDOG_STRIKES + 1)  # the first check only records the committed offset
    assert consumer.seeks == 1


def test_commits_waiting_for_an_unreachable_broker_are_not_a_stall() -> None:
    dog, consumer = stalled_watchdog(unreachable)
    checks(dog, 10 * WATCHDOG_STRIKES)
    assert consumer.seeks == 0 and dog.strikes == 0


def test_a_probe_that_does_not_answer_in_time_is_an_unreachable_broker(monkeypatch: Any) -> None:
    monkeypatch.setattr("streams.patches.watchdogs.PROBE_TIMEOUT_S", 0.01)
    dog, consumer = stalled_watchdog(hanging)
    checks(dog, 2 * WATCHDOG_STRIKES)
    assert consumer.seeks == 0


def test_the_count_starts_again_after_the_broker_was_away() -> None:
    answers = iter([True, True, False] + [True] * 10)

    async def flaky() -> None:
        if not next(answers):
            raise ConnectionError("broker down")

    dog, consumer = stalled_watchdog(flaky)
    checks(dog, 1 + 3)  # record, strike, strike, broker away: back to 0
    assert consumer.seeks == 0 and dog.strikes == 0
    checks(dog, WATCHDOG_STRIKES)
    assert consumer.seeks == 1
