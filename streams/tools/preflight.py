"""Checks a command runs before it starts for real, so a missing service is one clear line.

The worker retries Redis forever once it runs (an outage mid-stream is waited out); at
start, a Redis that cannot be reached within a few seconds is a configuration problem
(wrong URL, wrong password, server not started) and is reported as one.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError

from streams.core.errors import StateUnavailable
from streams.core.settings import Settings

#: How long the worker waits for Redis at start before giving up.
REDIS_WAIT_S = 10.0


async def check_redis(settings: Settings, wait_s: float = REDIS_WAIT_S) -> None:
    """Ping Redis until it answers; :class:`StateUnavailable` after ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    client = aioredis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        while True:
            try:
                await client.ping()
            except AuthenticationError:
                raise
            except (RedisError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise StateUnavailable(f"no answer to PING after {wait_s:.0f}s") from exc
                await asyncio.sleep(0.5)
            else:
                return
    finally:
        await client.aclose()
