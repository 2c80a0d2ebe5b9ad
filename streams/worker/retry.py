"""Retrying effects on external state with exponential backoff and full jitter.

Used around every Redis round trip of the worker: while Redis is down the batch is simply
not finished (and so not acknowledged), so nothing is lost and, thanks to offset fencing,
nothing is applied twice once Redis is back.

>>> [round(backoff_delay(n, base=0.1, cap=2.0, jitter=False), 2) for n in range(6)]
[0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors worth retrying: the server is unreachable or slow, the request itself is fine.
RETRIABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
#: Redis error replies that pass by themselves: a failover or resharding in progress
#: (READONLY: we wrote to a master that became a replica — the next attempt reconnects;
#: MASTERDOWN, TRYAGAIN, CLUSTERDOWN), a dataset still loading (LOADING: a ConnectionError in
#: redis-py, above) or a script still running (BUSY, matched by its text).
TRANSIENT: tuple[type[BaseException], ...] = (
    ReadOnlyError, MasterDownError, TryAgainError, ClusterDownError,
)  # fmt: skip
#: Redis error replies that an operator fixes (maxmemory reached with noeviction; an ACL
#: refusing a command or key). Not a record's fault, and the batch may be half-applied: the
#: worker waits and says why at every attempt rather than dead-letter good records.
NEEDS_OPERATOR: tuple[type[BaseException], ...] = (OutOfMemoryError, NoPermissionError)


def is_retriable(exc: BaseException) -> bool:
    """Whether waiting and trying again could help: an error that says so (``retriable``,
    the habit of :class:`streams.core.errors.ShopstreamError`), an unreachable or slow
    server (:data:`RETRIABLE`), a Redis state that passes (:data:`TRANSIENT`, and ``BUSY``: a
    Lua script has run longer than ``busy-reply-threshold``, e.g. one that was running when
    redis-server was paused) or one an operator fixes (:data:`NEEDS_OPERATOR`).

    >>> from streams.core.errors import StateUnavailable
    >>> is_retriable(ResponseError("BUSY Redis is busy running a script.")), is_retriable(
    ...     ResponseError("NOSCRIPT No matching script.")), is_retriable(StateUnavailable())
    (True, False, True)
    >>> is_retriable(OutOfMemoryError("command not allowed")), is_retriable(ReadOnlyError())
    (True, True)
    """
    if getattr(exc, "retriable", False) is True:
        return True
    if isinstance(exc, RETRIABLE + TRANSIENT + NEEDS_OPERATOR):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith("BUSY")


def error_kind(exc: BaseException) -> str:
    """A short label of an error for metrics: Redis's error code when it sent one.

    >>> error_kind(OutOfMemoryError("x", status_code="OOM")), error_kind(TimeoutError())
    ('OOM', 'TimeoutError')
    >>> error_kind(ResponseError("BUSY Redis is busy"))
    'BUSY'
    """
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code
    if type(exc) is ResponseError:
        return str(exc).split(" ", 1)[0][:20] or "ResponseError"
    return type(exc).__name__


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: bool = True) -> float:
    """Delay before retry number ``attempt`` (0-based): ``min(cap, base * 2**attempt)``."""
    delay = min(cap, base * (2**attempt))
    return random.uniform(0, delay) if jitter else delay  # noqa: S311 - jitter, not crypto


async def retry_forever(
    what: str,
    fn: Callable[[], Awaitable[T]],
    *,
    base: float = 0.1,
    cap: float = 5.0,
    should_stop: Callable[[], bool] = lambda: False,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Await ``fn()`` until it succeeds, retrying retriable errors with backoff.

    Each failure is logged once with the attempt number; recovery is logged too.
    Non-retriable errors propagate. ``should_stop`` lets a stopping worker give up.
    """
    attempt = 0
    while True:
        try:
            result = await fn()
        except Exception as exc:
            if not is_retriable(exc) or should_stop():
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = backoff_delay(attempt, base=base, cap=cap)
            hint = " (an operator must act: see docs/reliability.md)" if isinstance(
                exc, NEEDS_OPERATOR) else ""  # fmt: skip
            log.log(
                logging.ERROR if hint else logging.WARNING,
                "%s failed (attempt %d: %r)%s; retrying in %.2fs", what, attempt + 1, exc, hint,
                delay,
            )  # fmt: skip
            attempt += 1
            await asyncio.sleep(delay)
        else:
            if attempt:
                log.info("%s recovered after %d retries", what, attempt)
            return result
