"""The worker's online models and their signed checkpoints.

One :class:`Models` bundle (churn model, segment model, anomaly detector) per source
partition, held in a :class:`ModelSet`: like the profiles and churn tracks, a model learns
only from its own partition's events, in that partition's order. Kafka orders records
within a partition, never across partitions, so this is what makes alerts, segments and
anomalies the same however the partitions are spread over workers or interleaved in
batches (one model for all partitions would learn in whatever order batches happened to
arrive). The price is less data per model: ``shopstream evaluate churn --partitions N``
measures it (docs/churn.md).

The set is checkpointed atomically (``models.checkpoint``: HMAC-signed, never unpickled
before the signature is verified) every ``SHOPSTREAM_CHECKPOINT_INTERVAL_S`` and on
shutdown, recording the stream time and the last source offset each bundle includes; on
start the newest valid checkpoint is restored, so progressive metrics go on.

At a rebalance a partition's models move with it (:class:`Handover`, through Redis). Model
learning is at-most-once across a crash: labels learned after the last checkpoint are not
learned again (profiles and tracks, which decide the labels, are restored exactly).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.anomaly import AnomalyConfig, AnomalyDetector
from models.checkpoint import (
    checkpoint_path,
    latest_valid,
    prune,
    save_checkpoint,
    sign,
    verify,
)
from models.churn import ChurnModel
from models.segments import SegmentConfig, SegmentModel
from models.similarity import key_base
from streams.errors import CheckpointRejected
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Models:
    churn: ChurnModel
    segments: SegmentModel
    anomalies: AnomalyDetector
    #: "topic:partition" -> last source offset whose event these models include.
    offsets: dict[str, int] = field(default_factory=dict)
    stream_time_ms: int = 0

    @classmethod
    def fresh(cls, settings: Settings) -> Models:
        return cls(
            churn=ChurnModel(kind=settings.churn_model),  # type: ignore[arg-type]
            segments=SegmentModel(SegmentConfig(n_clusters=settings.segment_clusters)),
            anomalies=AnomalyDetector(
                AnomalyConfig(
                    burst_per_min=settings.anomaly_burst_per_min,
                    cooldown_ms=settings.anomaly_cooldown_ms,
                    bot_ttl_ms=settings.bot_ttl_ms,
                )
            ),
        )

    def seen(self, topic: str, partition: int, offset: int, ts_ms: int) -> None:
        key = f"{topic}:{partition}"
        if offset > self.offsets.get(key, -1):
            self.offsets[key] = offset
        self.stream_time_ms = max(self.stream_time_ms, ts_ms)


@dataclass(slots=True)
class ModelSet:
    """One :class:`Models` bundle per source partition (created on first use).

    >>> from streams.settings import Settings
    >>> ms = ModelSet()
    >>> ms.get(2, Settings()) is ms.get(2, Settings()), sorted(ms.parts)
    (True, [2])
    """

    parts: dict[int, Models] = field(default_factory=dict)

    def get(self, partition: int, settings: Settings) -> Models:
        models = self.parts.get(partition)
        if models is None:
            models = self.parts[partition] = Models.fresh(settings)
        return models

    @property
    def stream_time_ms(self) -> int:
        return max((m.stream_time_ms for m in self.parts.values()), default=0)

    @property
    def offsets(self) -> dict[str, int]:
        return {k: v for m in self.parts.values() for k, v in sorted(m.offsets.items())}

    @property
    def labels_learned(self) -> int:
        return sum(m.churn.n_learned for m in self.parts.values())

    def churn_metrics(self) -> dict[str, float]:
        """Progressive churn metrics of all partitions' models: quality weighted by labels."""
        each = [(m.churn.n_learned, m.churn.metrics) for m in self.parts.values()]
        each = [(n, metrics) for n, metrics in each if n > 1]  # ROCAUC.get() costs ~0.1 ms
        total = sum(n for n, _ in each)
        out = {
            k: sum(metrics[k] * n for n, metrics in each) / total if total else math.nan
            for k in ("auc", "log_loss")
        }
        out["n_learned"] = float(self.labels_learned)
        out["n_positive"] = float(sum(m.churn.n_positive for m in self.parts.values()))
        return out

    def segment_sizes(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for m in self.parts.values():
            total.update(m.segments.segment_sizes())
        return dict(sorted(total.items()))


class Checkpointer:
    """Saves and restores :class:`Models` under ``<data_dir>/checkpoints``."""

    def __init__(self, settings: Settings, clock: Any = time.monotonic) -> None:
        self.dir = Path(settings.data_dir) / "checkpoints"
        self.key = settings.checkpoint_key.encode()
        self.interval_s = settings.checkpoint_interval_s
        self.clock = clock
        self.last = clock()
        self.last_path: str | None = None
        if not self.key:
            log.warning(
                "SHOPSTREAM_CHECKPOINT_KEY is not set: model checkpoints are disabled, "
                "models start fresh on every restart"
            )

    def restore(self) -> ModelSet:
        if self.key:
            found = latest_valid(self.dir, self.key)
            if found is not None:
                models, meta, path = found
                if isinstance(models, ModelSet):
                    self.last_path = str(path)
                    log.info(
                        "models restored from %s (stream time %s, partitions %s, %d labels "
                        "learned)", path.name, meta.get("stream_time_ms"), sorted(models.parts),
                        models.labels_learned,
                    )  # fmt: skip
                    return models
                log.warning(
                    "checkpoint %s holds %s, not a ModelSet (a version before per-partition "
                    "models?); starting fresh", path, type(models).__name__,
                )  # fmt: skip
        return ModelSet()

    def due(self) -> bool:
        return bool(self.key) and self.clock() - self.last >= self.interval_s

    async def save(self, models: ModelSet, flush: Callable[[], Awaitable[None]]) -> Path | None:
        """Write a checkpoint of ``models``, after ``flush`` made their inputs' effects durable.

        ``flush`` is the producer's flush: the profile changelog and the outputs of every
        event the models include reach Kafka first, so a checkpoint is never ahead of what a
        restart restores (while the broker is unreachable the flush waits, and so does this).
        """
        if not self.key:
            return None
        await flush()
        self.last = self.clock()
        meta = {"stream_time_ms": models.stream_time_ms, "offsets": dict(models.offsets)}
        path = save_checkpoint(
            checkpoint_path(self.dir, models.stream_time_ms), models, meta, self.key
        )
        prune(self.dir, keep=3)
        self.last_path = str(path)
        log.info("checkpoint written: %s", path.name)
        return path


#: Stores a bundle if it is newer than the stored one (ARGV[3] = "1": or as new). KEYS[1]
#: the hash; ARGV offset, data, or-equal. Returns 1 when stored.
_GIVE = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'offset') or '-1')
local offset = tonumber(ARGV[1])
if offset > stored or (ARGV[3] == '1' and offset == stored) then
  redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'data', ARGV[2])
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
    Needs ``SHOPSTREAM_CHECKPOINT_KEY`` (signing), like checkpoints. Whoever can write to
    Redis can delete or roll back stored bundles (never run code: they are verified before
    unpickling); protect Redis with AUTH (docs/security.md).
    """

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_events
        self.base = key_base(settings.redis_prefix) + f"pm:{settings.topic_events}:"
        self.secret = settings.checkpoint_key.encode()

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def key(self, partition: int) -> str:
        return f"{self.base}{partition}"

    def offset(self, models: Models, partition: int) -> int:
        return models.offsets.get(f"{self.topic}:{partition}", -1)

    async def give(
        self, redis: Any, models: ModelSet, partitions: list[int], *, or_equal: bool = False
    ) -> dict[int, bool]:
        """Store the bundles held of ``partitions`` unless Redis has a newer one (``or_equal``:
        or one as new). Returns ``{partition: stored}`` for every bundle held: either way
        the stored bundle is then at least as new as ours."""
        held = [p for p in sorted(partitions) if p in models.parts]
        if not self.enabled or not held:
            return {}
        pipe = redis.pipeline(transaction=False)
        for p in held:
            m, key = models.parts[p], self.key(p)
            offset = self.offset(m, p)
            data = sign(m, {"offset": offset, "key": key}, self.secret)
            pipe.eval(_GIVE, 1, key, offset, data, "1" if or_equal else "0")
        return {p: bool(r) for p, r in zip(held, await pipe.execute(), strict=True)}

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
            try:  # unpickles only what replaces a local copy, and only after the HMAC
                bundle, meta = verify(raw, self.secret, f"redis key {key}")
            except CheckpointRejected as exc:
                log.warning("partition %d: stored models refused: %s", p, exc)
                continue
            if not isinstance(bundle, Models) or meta.get("key") != key:
                log.warning("partition %d: stored models refused: signed for %r, not %r",
                            p, meta.get("key"), key)  # fmt: skip
                continue
            if meta.get("offset") != offset:
                log.warning("partition %d: stored models refused: signed for offset %r, "
                            "stored as %d", p, meta.get("offset"), offset)  # fmt: skip
                continue
            models.parts[p] = bundle
            taken.append(p)
        return taken

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

    async def rewrite(self, redis: Any, models: ModelSet, partitions: list[int]) -> int:
        """After an erasure: store our copies of ``partitions`` over stored ones as new as
        them (which may remember the erased user). Returns the bundles stored."""
        stored = await self.give(redis, models, partitions, or_equal=True)
        return sum(stored.values())
