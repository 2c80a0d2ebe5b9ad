"""The main agent: ``shop.events`` → validation, DLQ, profiles, similarity counts, recommendations.

Thin by design; the logic lives in ``streams.pipeline`` (pure) and ``models.similarity``.
Why it is shaped like this (DESIGN §3):

* ``take``/``take_events`` ack the whole batch when the loop body returns *or raises*; we use
  ``noack_take`` and ack a batch only after all its effects are done. Nothing may raise
  here: bad records go to the DLQ, Redis errors are retried until they succeed (the batch
  is not acked meanwhile, so nothing is lost), and any other failure of one event sends
  that event to the DLQ with reason ``processing_error``. On shutdown the current batch
  gets a grace period to finish; otherwise it stays unacked and is redelivered.
* ``concurrency=1``: a second instance could commit past an event still in flight.
* Redis updates are fenced by the partition offset inside the Lua script, and profile
  updates by the offset kept in each profile envelope, so a redelivered batch (after a
  crash between effect and commit) changes nothing.
* Table writes name their changelog partition explicitly (the source partition), because
  in a batch Faust's "current event" is not the event whose key is being written.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streams.events import Event
from streams.pipeline import (
    REC_TRIGGERS,
    Envelope,
    Record,
    apply_profile,
    by_partition,
    dlq_headers,
    due_recommendations,
    recommendation_message,
    split,
)
from streams.retry import retry_forever

if TYPE_CHECKING:
    from streams.app import ShopApp

log = logging.getLogger(__name__)


def to_record(event: Any) -> Record:
    """The parts of a Faust event that processing needs."""
    msg = event.message
    return Record(msg.topic, msg.partition, msg.offset, event.key, event.value)


class BatchProcessor:
    """Applies one batch of consumed records; every effect is idempotent."""

    def __init__(self, shop: ShopApp) -> None:
        self.shop = shop
        self.settings = shop.settings
        self.pseudo_key = shop.settings.pseudonymise_key.encode()
        self.events_in = 0
        self.dlq_out = 0
        self.recs_out = 0

    async def process(self, batch: Sequence[Any]) -> None:
        records = [to_record(ev) for ev in batch]
        self.events_in += len(records)
        await self.shop.runtime.wait_ready()
        valid, rejected = split(
            records, max_bytes=self.settings.max_event_bytes, pseudonymise_key=self.pseudo_key
        )
        for rec, reason, detail in rejected:
            await self.dead_letter(rec, reason, detail)
        if not valid:
            return
        await self.learn(valid)
        due, failed = self.update_profiles(valid)
        for rec, detail in failed:
            await self.dead_letter(rec, "processing_error", detail)
        await self.recommend(due)

    async def dead_letter(self, rec: Record, reason: str, detail: str) -> None:
        log.warning(
            "rejected %s[%d]@%d: %s (%s)", rec.topic, rec.partition, rec.offset, reason, detail
        )
        await self.shop.dlq.send(
            key=rec.key, value=rec.value, headers=dlq_headers(rec, reason, detail)
        )
        self.dlq_out += 1

    async def learn(self, valid: list[tuple[Record, Event]]) -> None:
        store = self.shop.runtime.store
        for (topic, partition), items in by_partition(valid).items():
            await retry_forever(
                f"similarity update {topic}[{partition}]",
                functools.partial(store.apply_batch, topic, partition, items),
                should_stop=lambda: self.shop.app.should_stop,
            )

    def update_profiles(
        self, valid: list[tuple[Record, Event]]
    ) -> tuple[list[tuple[Event, Envelope]], list[tuple[Record, str]]]:
        """Apply events to profiles (fenced).

        Returns the recommendations due (each user's last trigger event, unless throttled)
        and the records whose processing failed, for the DLQ.
        """
        table = self.shop.profiles
        changed: dict[str, tuple[int, Envelope]] = {}
        triggers: dict[str, tuple[Event, Envelope]] = {}
        failed: list[tuple[Record, str]] = []
        for rec, event in valid:
            try:
                current = changed.get(event.user_id, (0, None))[1]
                if current is None:
                    raw = table.get(event.user_id)
                    current = Envelope.from_bytes(raw) if raw is not None else None
                env = apply_profile(current, rec.offset, event)
            except Exception as exc:
                log.exception(
                    "profile update failed at %s[%d]@%d", rec.topic, rec.partition, rec.offset
                )
                failed.append((rec, repr(exc)))
                continue
            if env is None:
                continue  # redelivered: already applied
            changed[event.user_id] = (rec.partition, env)
            if event.type in REC_TRIGGERS and event.item_id is not None:
                triggers[event.user_id] = (event, env)
        due = due_recommendations(triggers, self.settings.rec_throttle_ms)
        for event, env in due:
            env.last_rec_ms = event.ts_ms
        for user_id, (partition, env) in changed.items():
            value = env.to_bytes()
            table.data[user_id] = value
            table.send_changelog(partition, user_id, value)
        return due, failed

    async def recommend(self, due: list[tuple[Event, Envelope]]) -> None:
        if not due:
            return
        events = [event for event, _ in due]
        store = self.shop.runtime.store
        results = await retry_forever(
            "recommendation scoring",
            lambda: store.recommend_many(
                [(e.user_id, e.session_id) for e in events], self.settings.rec_k
            ),
            should_stop=lambda: self.shop.app.should_stop,
        )
        for event, items in zip(events, results, strict=True):
            await self.shop.recommendations.send(
                key=event.user_id.encode(), value=recommendation_message(event, items)
            )
        self.recs_out += len(events)


async def run_batch(processor: BatchProcessor, batch: Sequence[Any], grace_s: float) -> bool:
    """Process one batch; ``True`` when it may be acknowledged.

    A batch that is interrupted by shutdown gets ``grace_s`` seconds to finish; if it does
    not, it is left unacknowledged and will be redelivered (and fenced) after restart.
    An unexpected error sends the batch to the DLQ (so nothing is lost) and acks it.
    """
    task = asyncio.ensure_future(processor.process(batch))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        log.info("stopping: letting the current batch of %d finish (%.0fs)", len(batch), grace_s)
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            task.cancel()
            log.warning("batch not finished at shutdown; it will be redelivered")
        raise
    except Exception:
        log.exception("batch of %d failed unexpectedly; sending it to the DLQ", len(batch))
        for rec in map(to_record, batch):
            await processor.dead_letter(rec, "processing_error", "batch failed")
    return True


def register(shop: ShopApp) -> BatchProcessor:
    """Attach the agent to the app; returns the processor (its counters feed /metrics)."""
    settings = shop.settings
    processor = BatchProcessor(shop)

    @shop.app.agent(shop.events, concurrency=1, name="process_events")
    async def process_events(stream: Any) -> None:
        # noack_take: Faust does not ack (and so never commits) a batch until we say so,
        # unlike take()/take_events(), which ack in a `finally` even when processing failed.
        async for batch in stream.noack_take(
            settings.batch_size, within=settings.batch_within_ms / 1000
        ):
            if await run_batch(processor, batch, settings.shutdown_grace_s):
                for event in batch:
                    await stream.ack(event)

    shop.processor = processor
    return processor
