"""Signed model checkpoints of the worker's :class:`~models.bundle.ModelSet`.

The set is checkpointed atomically as plain JSON (:mod:`models.checkpoint`: HMAC-signed,
parsed only after the signature is verified, rebuilt with the worker's configs; nothing is
ever unpickled) every ``SHOPSTREAM_CHECKPOINT_INTERVAL_S`` and on shutdown, numbered in the
order they are written and recording the stream time and the last source offset each bundle
includes; on start the newest (last written) valid checkpoint is restored, so progressive
metrics go on (a refused one -- an older pickle format, tampered -- is logged, counted and
skipped; with none left, the models start fresh). Each checkpoint also stores the owned
partitions' models in Redis (:meth:`~streams.worker.partitions.Partitions.store_models`);
after a crash the undo hashes (:mod:`streams.worker.undo`) put the envelopes back as they
were then and the events after it are read again, so the models learn every event once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from models.bundle import ModelSet
from models.checkpoint import (
    SUFFIX,
    checkpoint_path,
    latest_valid,
    next_sequence,
    prune,
    save_checkpoint,
)
from streams.core.settings import Settings
from streams.worker.configs import anomaly_config, segment_config

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves and restores :class:`Models` under ``<data_dir>/checkpoints``."""

    def __init__(
        self, settings: Settings, clock: Any = time.monotonic,
        on_refused: Callable[[str], None] = lambda source: None,
    ) -> None:  # fmt: skip
        self.dir = Path(settings.data_dir) / "checkpoints"
        self.configs = segment_config(settings), anomaly_config(settings)
        #: checkpoints refused at the last restore (older format, tampered, ...); each is
        #: also reported to ``on_refused("checkpoint")`` (the refused-state metric)
        self.refused = 0
        self.on_refused = on_refused
        self.key = settings.checkpoint_key.encode()
        self.interval_s = settings.checkpoint_interval_s
        self.clock = clock
        self.last = clock()
        self.last_path: str | None = None
        #: the number of the checkpoint the models are at (0: none, the models as they start)
        self.sequence = 0
        if not self.key:
            log.warning(
                "SHOPSTREAM_CHECKPOINT_KEY is not set: model checkpoints are disabled, "
                "models start fresh on every restart"
            )

    def restore(self) -> ModelSet:
        if not self.key:
            return ModelSet()
        rejected: list[str] = []
        found = latest_valid(self.dir, self.key, rejected=rejected,
                             decode=lambda state: ModelSet.from_dict(state, *self.configs))
        self.refused = len(rejected)
        for _ in rejected:
            self.on_refused("checkpoint")
        if found is None:
            return ModelSet()
        models: ModelSet = found[0]
        meta, path = found[1], found[2]
        self.last_path = str(path)
        self.sequence = int(meta.get("sequence", 0))
        log.info(
            "models restored from %s (stream time %s, partitions %s, %d labels learned)",
            path.name, meta.get("stream_time_ms"), sorted(models.parts), models.labels_learned,
        )  # fmt: skip
        return models

    def due(self) -> bool:
        return bool(self.key) and self.clock() - self.last >= self.interval_s

    def postpone(self) -> None:
        """The next checkpoint an interval from now (after one failed)."""
        self.last = self.clock()

    async def save(
        self, models: ModelSet, flush: Callable[[], Awaitable[None]], *, only: bool = False
    ) -> Path | None:
        """Write a checkpoint of ``models``, after ``flush`` made their inputs' effects durable;
        keep the 3 newest, or with ``only`` (after an erasure: older ones remember the erased
        user) this one alone.

        ``flush`` is the producer's flush: the profile changelog and the outputs of every
        event the models include reach Kafka first, so a checkpoint is never ahead of what a
        restart restores (while the broker is unreachable the flush waits, and so does this).
        """
        if not self.key:
            return None
        await flush()
        self.last = self.clock()
        sequence = next_sequence(self.dir)
        meta = {"sequence": sequence, "stream_time_ms": models.stream_time_ms,
                "offsets": dict(models.offsets)}  # fmt: skip
        older = sorted(self.dir.glob(f"*{SUFFIX}")) if only and self.dir.exists() else []
        path = save_checkpoint(
            checkpoint_path(self.dir, sequence), models.to_dict(), meta, self.key
        )
        for old in older:
            if old != path:
                old.unlink(missing_ok=True)
        prune(self.dir, keep=3)
        self.last_path, self.sequence = str(path), sequence
        log.info("checkpoint written: %s", path.name)
        return path
