"""The forecast timer's tick when the worker stops under it (seen in a chaos run's log: an
ERROR with a traceback at every clean stop that caught a tick in flight)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from streams.core.errors import ConfigError
from streams.core.settings import Settings
from streams.domain.forecasts import CATCH_UP, due_origins
from streams.domain.kpis import DAY_MS
from streams.worker.forecasts import ForecastEmitter


class StoppingRuntime:
    """Ready until the first Redis use, which finds it stopped (as Runtime.on_stop left it)."""

    def __init__(self) -> None:
        self.ready = True

    @property
    def redis(self) -> Any:
        self.ready = False
        raise RuntimeError("Runtime is not started")


def emitter(runtime: Any) -> ForecastEmitter:
    shop: Any = SimpleNamespace(settings=Settings(), runtime=runtime)

    async def retry(_what: str, fn: Any) -> Any:
        return await fn()

    emitter = ForecastEmitter(shop, topic=None, sources=None, retry=retry)  # type: ignore[arg-type]
    emitter.due = lambda: asyncio.sleep(0, result=[0])  # type: ignore[method-assign]
    emitter.history = lambda origins: asyncio.sleep(0, result=b"[]")  # type: ignore[method-assign]
    emitter.publish = lambda origin, days: asyncio.sleep(0, result=runtime.redis)  # type: ignore[method-assign]
    return emitter


def test_a_stop_under_the_tick_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="streams.worker.forecasts"):
        asyncio.run(emitter(StoppingRuntime()).tick())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "stopped before they were sent" in caplog.text


def test_a_failure_while_running_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    runtime = SimpleNamespace(ready=True)
    broken = emitter(runtime)
    broken.publish = lambda origin, days: asyncio.sleep(0, result=1 / 0)  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="streams.worker.forecasts"):
        asyncio.run(broken.tick())
    assert "publishing the sales forecasts failed" in caplog.text


def test_the_share_of_origins_per_check_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="FORECAST_ORIGINS_PER_CHECK"):
        Settings(forecast_origins_per_check=-1).checked()


def checks(days_per_check: int, backlog_days: int, most: int = 1) -> tuple[list[int], int]:
    """Forecast checks while a worker drains ``backlog_days`` of events, the low watermark
    ``days_per_check`` days further at each, then until nothing is due: the origins sent in
    order, and the most sent by one check. ``due``/``publish`` as the emitter's, over
    :func:`due_origins` and the mark (``fc:sent`` only moves forward)."""
    first = 20_000  # a day number: the first stored day
    state = {"low": first + 1, "sent": -1}
    paced = emitter(SimpleNamespace(ready=True))
    paced.shop.settings = Settings(forecast_origins_per_check=most)
    sent: list[int] = []

    async def due() -> list[int]:  # ForecastEmitter.due without Redis
        return due_origins(state["low"] * DAY_MS, first_day=first, sent=state["sent"], most=most)

    async def publish(origin: int, days: bytes) -> int:
        sent.append(origin)
        state["sent"] = max(state["sent"], origin)
        return 1

    paced.due = due  # type: ignore[method-assign]
    paced.publish = publish  # type: ignore[method-assign]
    end, most_at_once = first + 1 + backlog_days, 0
    for _ in range(10_000):
        state["low"] = min(end, state["low"] + days_per_check)
        n = asyncio.run(paced.publish_due())
        most_at_once = max(most_at_once, n)
        if n == 0 and state["low"] == end:
            break
    return sent, most_at_once


@pytest.mark.parametrize(("per_check", "backlog"), [(1, 30), (2, 30), (3, 14), (7, 14), (5, 33)])
def test_a_paced_catch_up_loses_no_origin_of_a_backlog(per_check: int, backlog: int) -> None:
    """A worker back after days down drains the shop's backlog: event time runs days ahead
    at each check while the forecasts follow one origin per check. Every origin is still
    sent, once, in order (with a window of the newest 7, as before pacing, 9 of 30 were
    lost at 2 days per check)."""
    sent, most_at_once = checks(per_check, backlog)
    first = 20_000
    assert sent == list(range(first + 1, first + 1 + backlog + 1))
    assert most_at_once == 1


def test_a_fast_replay_works_out_one_origin_per_check_and_passes_over_the_rest() -> None:
    """A replay moving 40 days of event time per check: still one origin per check (the
    bounded CPU), in order, the passed-over ones never sent (as a backfill's)."""
    sent, most_at_once = checks(40, 400)
    assert most_at_once == 1
    assert sent == sorted(set(sent))
    assert len(sent) < 400 // 40 + CATCH_UP + 1
