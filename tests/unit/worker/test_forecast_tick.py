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


@pytest.mark.parametrize(("most", "sent"), [(1, [10]), (2, [10, 11]), (0, [10, 11, 12])])
def test_a_check_works_out_at_most_its_share_of_origins_oldest_first(
    most: int, sent: list[int]
) -> None:
    """A catch-up (a replay's fast event time, a worker back after days) is a background
    job: each check works out ``forecast_origins_per_check`` origins, the oldest due first,
    and reads only their history; the next check finds the rest still due."""
    runtime = SimpleNamespace(ready=True)
    paced = emitter(runtime)
    paced.shop.settings = Settings(forecast_origins_per_check=most)
    paced.due = lambda: asyncio.sleep(0, result=[10, 11, 12])  # type: ignore[method-assign]
    read: list[list[int]] = []
    published: list[int] = []

    async def history(origins: list[int]) -> bytes:
        read.append(list(origins))
        return b"[]"

    async def publish(origin: int, days: bytes) -> int:
        published.append(origin)
        return 6

    paced.history = history  # type: ignore[method-assign]
    paced.publish = publish  # type: ignore[method-assign]
    assert asyncio.run(paced.publish_due()) == 6 * len(sent)
    assert published == sent
    assert read == [sent]


def test_the_share_of_origins_per_check_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="FORECAST_ORIGINS_PER_CHECK"):
        Settings(forecast_origins_per_check=-1).checked()
