"""Evicting items nobody has looked at for long, in event time (bounded Redis memory).

An item's popularity count in ``<base>pop`` is the sum of its learned weights, each grown
by ``2^((ts - t0) / half-life)`` (see ``similarity.lua``). One event of weight 1 that is
``ttl`` old at the store's clock therefore has the score ``2^((clock - ttl - t0) / hl)``;
an item whose whole decayed count is below that is evicted: its popularity entry, its
category and its neighbour set. (Its neighbour set also expires by wall-clock TTL,
``RecConfig.item_ttl_s``; this covers replays, where wall time is short.) Neighbour
*entries* pointing at an evicted item stay until pruned (each set is bounded).

One script call evicts at most ``limit`` items, atomically (a learning call of another
worker never sees half an eviction).
"""

from __future__ import annotations

from typing import Any

from models.similarity.store import key_base

_DAY_MS = 86_400_000

EVICT = """
local meta, base = KEYS[1], ARGV[1]
local hl, ttl, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t0 = tonumber(redis.call('HGET', meta, 't0'))
local clock = tonumber(redis.call('HGET', meta, 'clock'))
if not t0 or not clock or clock - ttl <= t0 then return 0 end
local below = 2 ^ ((clock - ttl - t0) / hl)
local items = redis.call('ZRANGE', base .. 'pop', '-inf', '(' .. below, 'BYSCORE',
                         'LIMIT', 0, limit)
for _, item in ipairs(items) do
  redis.call('ZREM', base .. 'pop', item)
  redis.call('HDEL', base .. 'cat', item)
  redis.call('UNLINK', base .. 'n:' .. item)
end
return #items
"""


async def evict_stale_items(
    redis: Any, prefix: str, *, half_life_days: float, ttl_days: float, limit: int = 1000
) -> int:
    """Evict up to ``limit`` items whose decayed count is below one event ``ttl_days`` old
    (event time, the store's clock); returns how many. ``ttl_days <= 0``: nothing."""
    if ttl_days <= 0:
        return 0
    base = key_base(prefix)
    args = [base, half_life_days * _DAY_MS, ttl_days * _DAY_MS, limit]
    return int(await redis.eval(EVICT, 1, base + "meta", *args))
