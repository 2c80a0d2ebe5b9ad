"""Fences that know where they came from, and the checks that keep them honest (issue 15).

Three facts make an offset fence trustworthy, and this module owns them:

* **the topic's identity**: the events topic's Kafka topic id (its first 12 hex digits, the
  *incarnation*) names the source of every fence — a user's envelope fences
  ``incarnation:partition``, the similarity store ``topic@incarnation:partition``. The id a
  store was built from is kept in Redis (``<prefix>sources``); a different one (the topic was
  deleted and created again: its offsets start over) stops the worker with
  :class:`~streams.core.errors.StateDiverged` until an operator accepts it
  (``shopstream sources --accept``);
* **the log still holds what the fences claim**: at every assignment, a fence at or past a
  partition's log end (records lost on the broker, an unclean election, a topic replaced)
  stops the worker — processing on would skip every new record up to the fence;
* **who owns a partition**: each assignment takes a fresh token (``INCR <prefix>owner-seq``)
  and stores it per partition (``<prefix>owners``, never replacing a newer one); the
  similarity store's learn call and the envelope write check it, so a paused worker whose
  partitions moved meanwhile (a zombie) writes nothing when it wakes up
  (:class:`~streams.core.errors.Fenced`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson

from models.similarity import key_base
from streams.core.errors import Fenced, StateDiverged
from streams.core.settings import Settings
from streams.domain.envelope import Envelope
from streams.kafka import topic_layout

log = logging.getLogger(__name__)

#: Stores ``token`` as the owner of ``KEYS[2]``'s field ARGV[1] unless a newer one is there.
_CLAIM = """
local stored = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > stored then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return redis.call('HGET', KEYS[1], ARGV[1])
"""


class Sources:
    """The events topic's identity and partition ownership, for one worker."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_events
        self.settings = settings
        base = key_base(settings.redis_prefix)
        self.sources_key, self.off_key = base + "sources", base + "off"
        self.owners_key, self.seq_key = base + "owners", base + "owner-seq"
        self.topic_id = ""
        self.tokens: dict[int, str] = {}
        self.upgrading = False  # the store predates topic ids: adopt its fences once

    @property
    def incarnation(self) -> str:
        return self.topic_id[:12]

    def field(self, partition: int) -> str:
        return f"{self.topic}:{partition}"

    def fence_field(self, partition: int) -> str:
        """The similarity store's fence of ``partition`` (``Record.source``:partition)."""
        source = f"{self.topic}@{self.incarnation}" if self.incarnation else self.topic
        return f"{source}:{partition}"

    # --- identity -----------------------------------------------------------------------
    async def identify(self, redis: Any) -> None:
        """Learn the topic's id; stop (StateDiverged) if the store was built from another,
        or if the events topic and the profile changelog have different partition counts
        (partitions added without ``shopstream repartition``)."""
        changelog = f"{self.settings.app_id}-profiles-changelog"
        layout = await topic_layout(self.settings, [self.topic, changelog])
        self.topic_id = layout.get(self.topic, ("", 0))[0]
        counts = {name: n for name, (_, n) in layout.items()}
        if len(set(counts.values())) > 1:
            raise StateDiverged(
                f"partition counts differ: {counts}. Partitions were added to the events "
                "topic without moving the users' state: stop the workers and run "
                "`shopstream repartition --partitions N` (docs/reliability.md, 'Adding "
                "partitions')"
            )
        if not self.topic_id:
            return
        stored = await redis.hget(self.sources_key, self.topic)
        if stored is None:
            await redis.hsetnx(self.sources_key, self.topic, self.topic_id)
            self.upgrading = True
            return
        if stored.decode() != self.topic_id:
            raise StateDiverged(
                f"the events topic {self.topic!r} was recreated: its id is {self.topic_id}, "
                f"the stored state (Redis prefix {self.settings.redis_prefix!r}, profiles, "
                f"fences) was built from {stored.decode()}. Its offsets start over, so the "
                "old fences would skip new records. Accept the new topic with "
                "`shopstream sources --accept` (the state is kept, the old fences are set "
                "aside), or start afresh with new state (docs/reliability.md, 'Fences')"
            )

    async def verify(
        self, redis: Any, highwaters: dict[int, int], table: MutableMapping[str, bytes]
    ) -> None:
        """Stop (StateDiverged) if a fence of an assigned partition is at or past its log end
        (``highwaters``: partition -> the offset the next record will get)."""
        parts = sorted(highwaters)
        if self.upgrading and self.incarnation:  # fences of a version without topic ids
            for p in parts:
                legacy = await redis.hget(self.off_key, f"{self.topic}:{p}")
                if legacy is not None:
                    await redis.hsetnx(self.off_key, self.fence_field(p), legacy)
        stored = await redis.hmget(self.off_key, [self.fence_field(p) for p in parts])
        fences = {p: int(v) for p, v in zip(parts, stored, strict=True) if v is not None}
        for raw in table.values():
            env = Envelope.from_bytes(raw)
            for p in parts:
                key = f"{self.incarnation}:{p}"
                fence = env.fences.get(key, env.offset if not env.fences and
                                       env.partition == p else -1)  # fmt: skip
                if fence > fences.get(p, -1):
                    fences[p] = fence
        ahead = {p: (f, highwaters[p]) for p, f in fences.items() if f >= highwaters[p]}
        if ahead:
            detail = ", ".join(f"partition {p}: applied up to offset {f}, log ends at {end}"
                               for p, (f, end) in sorted(ahead.items()))  # fmt: skip
            raise StateDiverged(
                f"stored fences are ahead of the log of {self.topic!r} ({detail}): records "
                "were lost on the broker, or the topic was replaced. Processing on would "
                "skip every new record up to the fence (docs/reliability.md, 'Fences')"
            )

    # --- ownership ----------------------------------------------------------------------
    async def claim(self, redis: Any, partitions: Iterable[int]) -> None:
        """A fresh owner token for ``partitions`` (an assignment), newer than any before."""
        token = str(await redis.incr(self.seq_key))
        self.tokens = {}
        for p in sorted(partitions):
            owner = await redis.eval(_CLAIM, 1, self.owners_key, self.field(p), token)
            self.tokens[p] = token  # ours: if a newer assignment claimed it, checks fail
            stored = owner.decode() if isinstance(owner, bytes) else str(owner)
            if stored != token:  # a newer assignment claimed it already
                log.warning("partition %d is owned by a newer assignment (%s)", p, stored)

    def owners(self, partitions: Iterable[int]) -> dict[str, str]:
        """``topic:partition`` -> our token, for the store's guard."""
        return {self.field(p): self.tokens.get(p, "none") for p in partitions}

    async def check_owner(self, redis: Any, partitions: Iterable[int]) -> None:
        """Raise Fenced unless every partition of ``partitions`` is still ours (unchecked
        before the first claim: batches only come after an assignment, which claims)."""
        parts = sorted(set(partitions))
        if not parts or not self.tokens:
            return
        stored = await redis.hmget(self.owners_key, [self.field(p) for p in parts])
        for p, owner in zip(parts, stored, strict=True):
            if owner is None or owner.decode() != self.tokens.get(p):
                raise Fenced(
                    f"partition {p} of {self.topic!r} moved to another worker (owner token "
                    f"{owner!r}, ours {self.tokens.get(p)!r})"
                )

    def describe(self) -> str:
        return orjson.dumps({"topic": self.topic, "id": self.topic_id,
                             "tokens": self.tokens}).decode()  # fmt: skip
