"""Identity links: a visitor's anonymous id -> the customer id it logged in as (Redis).

Written by the collector's identify calls (:mod:`streams.web.collector`), read by it to put
later events of the anonymous id under the customer, and removed with the customer by
``forget`` (:mod:`streams.worker.erasure`). Keys: ``{prefix}:alias:<anonymous id>`` holds the
customer id; ``{prefix}:aliases:<customer>`` the set of its anonymous ids (``<customer>`` is
the pseudonym when pseudonymisation is on, the id ``forget`` is given). Both expire after
``SHOPSTREAM_IDENTITY_TTL_DAYS``.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from models.similarity import key_base


class Identities:
    """The links of one Redis key prefix."""

    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_ms: int) -> None:
        self.redis, self.ttl_ms = redis, ttl_ms
        self.alias, self.aliases = key_base(prefix) + "alias:", key_base(prefix) + "aliases:"

    async def link(self, links: Sequence[tuple[str, str, str]]) -> None:
        """Store ``(anonymous id, customer id, customer's state id)`` links."""
        if not links:
            return
        pipe = self.redis.pipeline(transaction=False)
        for anonymous, customer, state_id in links:
            pipe.set(self.alias + anonymous, customer.encode(), px=self.ttl_ms)
            pipe.sadd(self.aliases + state_id, anonymous)
            pipe.pexpire(self.aliases + state_id, self.ttl_ms)
        await pipe.execute()

    async def resolve(self, users: Sequence[str]) -> dict[str, str]:
        """The customer id of each of ``users`` that is a linked anonymous id."""
        if not users:
            return {}
        found = await self.redis.mget([self.alias + u for u in users])
        return {u: c.decode() if isinstance(c, bytes) else str(c)
                for u, c in zip(users, found, strict=True) if c}  # fmt: skip

    async def forget(self, state_id: str) -> int:
        """Remove every link to the customer; returns how many anonymous ids were linked."""
        anonymous = await self.redis.smembers(self.aliases + state_id)
        keys = [self.aliases + state_id]
        keys += [self.alias + (a.decode() if isinstance(a, bytes) else str(a)) for a in anonymous]
        await self.redis.unlink(*keys)
        return len(anonymous)
