"""retry_forever: which Redis errors a batch waits out, and which ones are bugs."""

from __future__ import annotations

import asyncio

import pytest
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from streams.worker.retry import retry_forever


def flaky(*errors: BaseException) -> tuple[list[int], object]:
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "done"

    return calls, fn


def test_busy_and_connection_errors_are_waited_out() -> None:
    busy = ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL")
    calls, fn = flaky(busy, RedisConnectionError("refused"), busy)
    seen: list[BaseException] = []
    result = asyncio.run(retry_forever("x", fn, base=0.001, on_retry=seen.append))  # type: ignore[arg-type]
    assert result == "done" and len(calls) == 4 and seen[0] is busy


def test_other_redis_errors_propagate_at_once() -> None:
    calls, fn = flaky(ResponseError("NOSCRIPT No matching script"))
    with pytest.raises(ResponseError, match="NOSCRIPT"):
        asyncio.run(retry_forever("x", fn, base=0.001))  # type: ignore[arg-type]
    assert len(calls) == 1


@pytest.mark.parametrize("reply", [
    "OOM command not allowed when used memory > 'maxmemory'.",
    "READONLY You can't write against a read only replica.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "CLUSTERDOWN The cluster is down",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "LOADING Redis is loading the dataset in memory",
    "NOPERM this user has no permissions to run the 'evalsha' command",
])  # fmt: skip
def test_redis_states_that_pass_or_that_an_operator_ends_are_waited_out(reply: str) -> None:
    """Issue 15, hole 3: these replies (as redis-py parses them) failed the batch at once,
    which then went to the DLQ half-applied; the batch now waits (only LOADING was retried)."""
    error = BaseParser.parse_error(reply)
    calls, fn = flaky(error, error)
    seen: list[BaseException] = []
    result = asyncio.run(retry_forever("x", fn, base=0.001, on_retry=seen.append))  # type: ignore[arg-type]
    assert result == "done" and len(calls) == 3 and seen == [error, error]
