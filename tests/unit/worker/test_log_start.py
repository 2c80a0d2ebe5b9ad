"""Settle asks each partition's log start before it rolls a partition back to its stored
models; a failed request used to count as "unknown" at once, so one broker hiccup at an
assignment cost the roll-back (the models then miss the events since their store)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from streams.core.settings import Settings
from streams.worker import partitions


class FlakyConsumer:
    """``earliest_offsets`` fails ``failures`` times, then answers ``start``."""

    def __init__(self, failures: int, start: int | None) -> None:
        self.failures, self.start, self.asked = failures, start, 0

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        self.asked += 1
        if self.asked <= self.failures:
            raise TimeoutError("leader moving")
        return {} if self.start is None else {tp: self.start for tp in tps}


def ask(consumer: FlakyConsumer, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.support.fakes import fake_shop, new_processor

    monkeypatch.setattr(partitions, "LOG_START_PAUSE_S", 0.0)
    shop = fake_shop(Settings())
    shop.app.consumer = consumer  # type: ignore[misc]
    parts = new_processor(shop).parts
    return asyncio.run(parts.ask_log_start(0)), parts.log_starts


def test_a_failed_request_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FlakyConsumer(failures=partitions.LOG_START_ATTEMPTS - 1, start=7)
    assert ask(consumer, monkeypatch) == (7, {0: 7})
    assert consumer.asked == partitions.LOG_START_ATTEMPTS


def test_a_broker_that_keeps_failing_or_does_not_say_leaves_it_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FlakyConsumer(failures=99, start=7)
    assert ask(consumer, monkeypatch) == (None, {})
    assert consumer.asked == partitions.LOG_START_ATTEMPTS
    assert ask(FlakyConsumer(failures=0, start=None), monkeypatch) == (None, {})
