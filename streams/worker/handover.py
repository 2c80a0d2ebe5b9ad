"""Moving a partition's models with the partition at a rebalance, through Redis."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from models.bundle import Models, ModelSet
from models.checkpoint import sign, verify
from models.errors import CheckpointRejected
from models.similarity import key_base
from streams.core.settings import Settings
from streams.worker.configs import anomaly_config, segment_config
from streams.worker.sources import Sources
from streams.worker.undo import undo_base

log = logging.getLogger(__name__)

#: Stores a bundle if it is newer than the stored one (ARGV[3] = "1": or as new). KEYS[1]
#: the hash, KEYS[2] the partition's undo hash (streams.worker.undo); ARGV offset, data,
#: or-equal. With ARGV[4] = "1" (the owner storing the models of a partition whose table is
#: at that offset), only if the owners hash KEYS[3] holds its token ARGV[6] under ARGV[5],
#: and the undo hash starts the epoch ARGV[7] at the bundle. Anyone else stores only where
#: no undo hash exists: models past an epoch's would leave its entries without the models
#: they go back to. Returns 1 when stored, 0 when not, -2 when the partition moved.
_GIVE = """
if ARGV[4] == '1' then
  if redis.call('HGET', KEYS[3], ARGV[5]) ~= ARGV[6] then return -2 end
elseif redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local stored = tonumber(redis.call('HGET', KEYS[1], 'offset') or '-1')
local offset = tonumber(ARGV[1])
if offset > stored or (ARGV[3] == '1' and offset == stored) then
  redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'data', ARGV[2])
  if ARGV[4] == '1' then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], '@epoch', ARGV[7])
  end
  return 1
end
return 0
"""


class Handover:
    """Moves a partition's models with the partition, through Redis.

    When a worker gives partitions up (revocation, clean stop) it stores every bundle it
    holds under ``<prefix>:pm:<topic>:<partition>`` (a hash: ``offset``, ``data``), signed
    like a checkpoint (nothing unverified is ever unpickled) with the key and offset in the
    signed part, and only if the bundle includes a later source offset than the stored one
    (an older copy never replaces a newer one). Before its first batch after an assignment
    the owner *settles*: bundles of partitions it no longer has are stored (same rule) and
    dropped; stored bundles newer than its own copies of its partitions replace them. After
    a clean rebalance the new owner so goes on exactly where the old one stopped: the old
    owner finished its batch first, and every record past the bundle's offset is new to it.
    Needs ``SHOPSTREAM_CHECKPOINT_KEY`` (signing), like checkpoints. A bundle is plain JSON
    (:meth:`Models.to_dict`), parsed only after its HMAC verifies and rebuilt with this
    worker's configs: whoever can write to Redis can delete or roll back stored bundles, never
    run code (nothing is unpickled); protect Redis with AUTH (docs/security.md). A refused
    bundle (an older pickle format, tampered, misplaced) is logged, reported to
    ``on_refused("handover")`` and counted in :attr:`refused`; the owner keeps its copy.
    """

    def __init__(
        self, settings: Settings, on_refused: Callable[[str], None] = lambda source: None
    ) -> None:
        self.topic = settings.topic_events
        self.base = key_base(settings.redis_prefix) + f"pm:{settings.topic_events}:"
        self.secret = settings.checkpoint_key.encode()
        self.configs = segment_config(settings), anomaly_config(settings)
        self.refused = 0
        self.on_refused = on_refused
        self.undo_base = undo_base(settings)

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def key(self, partition: int) -> str:
        return f"{self.base}{partition}"

    def offset(self, models: Models, partition: int) -> int:
        return models.offsets.get(f"{self.topic}:{partition}", -1)

    async def give(
        self, redis: Any, models: ModelSet, partitions: list[int], *, or_equal: bool = False,
        owner: Sources | None = None, epochs: dict[int, str] | None = None,
    ) -> dict[int, bool]:
        """Store the bundles held of ``partitions`` unless Redis has a newer one (``or_equal``:
        or one as new). Returns ``{partition: stored}`` for every bundle held. The
        partitions named in ``epochs`` (partition -> the new undo epoch's name) are stored by
        their ``owner``, whose table is at the bundle's offset: only while its token is
        current, and each one stored starts that undo epoch; the others only where the
        partition has no undo hash (streams.worker.undo)."""
        held = [p for p in sorted(partitions) if p in models.parts]
        if not self.enabled or not held:
            return {}
        epochs = epochs or {}
        pipe = redis.pipeline(transaction=False)
        for p in held:
            m, key = models.parts[p], self.key(p)
            offset = self.offset(m, p)
            data = sign(m.to_dict(), {"offset": offset, "key": key}, self.secret)
            equal = "1" if or_equal else "0"
            keys = (key, f"{self.undo_base}{p}", owner.owners_key if owner else key)
            if owner is not None and p in epochs and p in owner.tokens:
                pipe.eval(_GIVE, 3, *keys, offset, data, equal, "1", owner.field(p),
                          owner.tokens[p], epochs[p])  # fmt: skip
            else:
                pipe.eval(_GIVE, 3, *keys, offset, data, equal, "0")
        return {p: int(r) == 1 for p, r in zip(held, await pipe.execute(), strict=True)}

    async def fetch(self, redis: Any, partition: int, offset: int) -> Models | None:
        """The stored models of ``partition`` if they are those of ``offset`` (verified)."""
        key = self.key(partition)
        stored, raw = await redis.hmget(key, ["offset", "data"])
        if stored is None or int(stored) != offset or raw is None:
            return None
        try:
            return self.bundle(raw, key, offset)
        except CheckpointRejected as exc:
            log.warning("partition %d: stored models refused: %s", partition, exc)
            self.refused += 1
            self.on_refused("handover")
            return None

    async def take(self, redis: Any, models: ModelSet, partitions: list[int]) -> list[int]:
        """Replace the bundles of ``partitions`` by newer stored ones; returns those taken."""
        if not self.enabled or not partitions:
            return []
        wanted = sorted(partitions)
        pipe = redis.pipeline(transaction=False)
        for p in wanted:
            pipe.hget(self.key(p), "offset")
        stored = await pipe.execute()
        newer = [
            (p, int(off)) for p, off in zip(wanted, stored, strict=True)
            if off is not None and (p not in models.parts
                                    or int(off) > self.offset(models.parts[p], p))
        ]  # fmt: skip
        if not newer:
            return []
        pipe = redis.pipeline(transaction=False)
        for p, _ in newer:
            pipe.hget(self.key(p), "data")
        taken = []
        for (p, offset), raw in zip(newer, await pipe.execute(), strict=True):
            key = self.key(p)
            if raw is None:
                continue
            try:  # parses (JSON) only what replaces a local copy, and only after the HMAC
                bundle = self.bundle(raw, key, offset)
            except CheckpointRejected as exc:
                log.warning("partition %d: stored models refused: %s", p, exc)
                self.refused += 1
                self.on_refused("handover")
                continue
            models.parts[p] = bundle
            taken.append(p)
        return taken

    def bundle(self, raw: bytes, key: str, offset: int) -> Models:
        """The models stored as ``raw`` under ``key`` with ``offset``, or CheckpointRejected:
        the HMAC first, then the key and offset it was signed for, then the JSON rebuild."""
        state, meta = verify(raw, self.secret, f"redis key {key}")
        if meta.get("key") != key:
            raise CheckpointRejected(f"signed for {meta.get('key')!r}, not {key!r}")
        if meta.get("offset") != offset:
            raise CheckpointRejected(f"signed for offset {meta.get('offset')!r}, not {offset}")
        return Models.from_dict(state, *self.configs)

    async def settle(
        self, redis: Any, models: ModelSet, assigned: set[int]
    ) -> tuple[list[int], list[int]]:
        """After an assignment: store and drop the bundles of partitions not ``assigned``,
        take newer stored bundles of the assigned ones. Returns (released, taken)."""
        strays = [p for p in models.parts if p not in assigned]
        released = sorted(await self.give(redis, models, strays))
        for p in released:
            del models.parts[p]
        return released, await self.take(redis, models, sorted(assigned))
