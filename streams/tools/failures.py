"""One line for an operator instead of a traceback: what failed and what to check.

:func:`explain` turns an exception that escaped a command into ``(message, exit_code)``.
It looks through the exception's causes (``raise ... from``, exception groups), so a
``KafkaConnectionError`` wrapped by three layers is still reported as Kafka being away.
Anything it does not recognise is a bug: the command lets it through, with its traceback.

Exit codes: ``2`` a setting or an input file is wrong; ``3`` Kafka, Redis or the worker
cannot be reached; ``1`` anything else that failed (e.g. records that could not be sent).

>>> from aiokafka.errors import KafkaConnectionError
>>> from streams.core.settings import Settings
>>> err = RuntimeError("wrapped")
>>> err.__cause__ = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")
>>> message, code = explain(err, Settings(kafka_bootstrap="127.0.0.1:1"))
>>> message.startswith("cannot reach Kafka at 127.0.0.1:1 (KafkaConnectionError"), code
(True, 3)
>>> explain(ValueError("a bug"), Settings()) is None
True
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from aiokafka.errors import KafkaConnectionError, KafkaError
from redis.exceptions import AuthenticationError as RedisAuthError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.core.errors import (
    BrokerUnavailable,
    ConfigError,
    InputError,
    ShopstreamError,
    StateUnavailable,
)
from streams.core.settings import Settings

EXIT_FAILED, EXIT_INPUT, EXIT_UNREACHABLE = 1, 2, 3


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything behind it: causes, contexts, members of exception groups."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(nxt for nxt in (e.__cause__, e.__context__) if nxt is not None)


def redis_address(url: str) -> str:
    """host:port/db of a Redis URL, without credentials.

    >>> redis_address("redis://:s3cret@cache:6380/2")
    'cache:6380/2'
    """
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).removeprefix(type(exc).__name__ + ": ")
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def explain(exc: BaseException, settings: Settings | None) -> tuple[str, int] | None:
    """The operator's line and exit code for ``exc``, or ``None`` if it is not an
    environment problem (a bug: let the traceback show)."""
    s = settings or Settings()
    chain = list(causes(exc))
    for e in chain:
        if isinstance(e, ConfigError):
            return f"configuration error: {e}", EXIT_INPUT
        if isinstance(e, InputError):
            return f"input error: {e}", EXIT_INPUT
    for e in chain:
        if isinstance(e, KafkaConnectionError | BrokerUnavailable):
            return (
                f"cannot reach Kafka at {s.kafka_bootstrap} ({_short(e)}); check "
                "SHOPSTREAM_KAFKA_BOOTSTRAP and that the broker runs (make up)",
                EXIT_UNREACHABLE,
            )
        if isinstance(e, RedisAuthError):
            return (
                f"Redis at {redis_address(s.redis_url)} refused the credentials ({_short(e)}); "
                "check the password in SHOPSTREAM_REDIS_URL",
                EXIT_UNREACHABLE,
            )
        if isinstance(e, RedisConnectionError | RedisTimeoutError | StateUnavailable):
            return (
                f"cannot reach Redis at {redis_address(s.redis_url)} ({_short(e)}); check "
                "SHOPSTREAM_REDIS_URL and that redis-server runs (make up)",
                EXIT_UNREACHABLE,
            )
        if isinstance(e, KafkaError):
            return (
                f"Kafka at {s.kafka_bootstrap} failed ({_short(e)}); check the broker's health "
                "and the SHOPSTREAM_KAFKA_* security settings",
                EXIT_UNREACHABLE,
            )
    for e in chain:
        if isinstance(e, OSError) and e.filename:
            return f"cannot use the file {e.filename}: {e.strerror or e}", EXIT_INPUT
        if isinstance(e, UnicodeDecodeError):
            return f"input is not UTF-8 text ({_short(e)})", EXIT_INPUT
        if isinstance(e, OSError) and e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
            return f"connection refused ({_short(e)}); is the service running?", EXIT_UNREACHABLE
        if isinstance(e, ShopstreamError):
            return f"error: {e}", EXIT_FAILED
    return None
