"""The forecast timer's tick when the worker stops under it (seen in a chaos run's log: an
ERROR with a traceback at every clean stop that caught a tick in flight)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

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
