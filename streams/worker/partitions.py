"""The per-partition state a worker holds, and what happens to it at a rebalance.

For every source partition it owns, a worker keeps a bundle of models
(:class:`~models.bundle.Models`) and a churn state (:class:`ChurnState`, derived from the
tracks stored in the partition's envelopes). When partitions move, the models move with them
through Redis (:class:`~streams.worker.handover.Handover`); the churn state is rebuilt from the
table by whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from faust.types import TP

from models.bundle import Models, ModelSet
from models.similarity import key_base
from streams.core.events import Record
from streams.domain.churn_state import ChurnConfig, ChurnState, rebuild, track_from_list
from streams.domain.envelope import Envelope
from streams.patches.tablestore import put
from streams.worker.configs import model_factory
from streams.worker.context import ShopApp
from streams.worker.handover import Handover
from streams.worker.runtime import redis_client
from streams.worker.sources import Sources
from streams.worker.tombstones import Tombstones
from streams.worker.undo import EPOCH, Entries, Undo, UndoStore, new_epoch, offset_of, undo_base

#: user -> (the table's bytes, the envelope they decode to), for users whose envelope is
#: unchanged since a batch decoded or wrote it: reused while the table holds those very bytes
LiveEnvelopes = dict[str, tuple[bytes, Envelope]]

log = logging.getLogger(__name__)
T = TypeVar("T")
Retry = Callable[[str, Callable[[], Awaitable[T]]], Awaitable[T]]

#: Longest a revocation or a clean stop waits to store the partition models in Redis.
HANDOVER_TIMEOUT_S = 10.0
#: Longest the assignment waits to read the undo hashes (then settling seeks back).
PLAN_TIMEOUT_S = 10.0
#: how long one request for the log ends may take before it is asked again
LOG_ENDS_TIMEOUT_S = 15.0
#: requests for a partition's log start at settle before it is taken as unknown, and the
#: pause after the first failure (doubled, then tripled: 1 + 2 + 3 s)
LOG_START_ATTEMPTS = 4
LOG_START_PAUSE_S = 1.0


class Partitions:
    """Models and churn state per source partition; the hand-over of the models."""

    def __init__(
        self, shop: ShopApp, models: ModelSet, churn_cfg: ChurnConfig, lock: asyncio.Lock,
        retry: Retry[Any],
    ) -> None:  # fmt: skip
        self.shop, self.models, self.churn_cfg = shop, models, churn_cfg
        self.fresh = model_factory(shop.settings)
        models.upgrade(self.fresh)  # a checkpoint of an older layout or another horizon
        self.states: dict[int, ChurnState] = {}
        #: partition -> (wall time, churn clock) at its last record (streams.worker.idle)
        self.anchors: dict[int, tuple[float, int]] = {}
        #: decoded envelopes kept between batches (:class:`streams.worker.users.UserUpdates`)
        self.envelopes: LiveEnvelopes = {}
        self.handover = Handover(shop.settings, on_refused=shop.telemetry.on_state_refused)
        self.sources = Sources(shop.settings)
        self.tombstones = Tombstones(shop, retry)  # erasure fences of forgotten users
        self.lock, self.retry = lock, retry
        self.given: set[int] = set()  # partitions whose models went to Redis at revocation
        # the source partitions of a new assignment, until the models are settled for them
        self.to_settle: set[int] | None = None
        #: the envelopes as they were when each partition's models were stored (in Redis)
        self.undo = UndoStore(shop.settings.checkpoint_key.encode(), undo_base(shop.settings),
                              self.sources.owners_key)  # fmt: skip
        #: partition -> offset to read it again from (its stored models' offset + 1), as
        #: planned at assignment (:meth:`plan_replays`) for the consumer's first seek; until
        #: the assignment is settled
        self.replay_from: dict[int, int] = {}
        #: partition -> offset to read it again from, set when settling put its envelopes
        #: back; taken by the agent (:meth:`take_replays`)
        self.replays: dict[int, int] = {}
        #: partition -> the highest offset whose batch delivered its outputs before the
        #: crash: batches up to it are read again to learn, and send nothing again (kept in
        #: Redis too, for whoever reads the partition next: :meth:`start_replays`)
        self.replay_until: dict[int, int] = {}
        #: partition -> its log start, asked at assignment (a replay needs it known)
        self.log_starts: dict[int, int] = {}

    def roll_back(self, back: dict[int, Entries]) -> dict[int, int]:
        """Put the envelopes named in ``back`` (partition -> entries) back as they were when
        the partition's models were stored, in the table and its changelog (not those moved
        to another partition by `shopstream repartition` since); note up to where their
        outputs were already sent. Returns the envelopes put back per partition."""
        table = self.shop.profiles
        topic, incarnation = self.shop.settings.topic_events, self.sources.incarnation
        put_back: dict[int, int] = {}
        for partition, entries in sorted(back.items()):
            here = Record(topic, partition, 0, None, None, incarnation=incarnation)
            for uid, before in entries.items():
                now = table.data.get(uid)
                if now == before:
                    continue
                if now is not None:
                    env = Envelope.from_bytes(now)
                    if env.partition != partition:
                        continue
                    sent = env.fence(here)
                    self.replay_until[partition] = max(self.replay_until.get(partition, -1),
                                                       sent)  # fmt: skip
                if before is None:
                    if now is not None:
                        del table.data[uid]
                else:
                    put(table.data, partition, uid, before)
                table.send_changelog(partition, uid, before, value_serializer="raw")
                put_back[partition] = put_back.get(partition, 0) + 1
        self.envelopes.clear()
        for partition in back:
            self.states.pop(partition, None)
            self.anchors.pop(partition, None)
        return put_back

    def until_key(self, partition: int) -> str:
        topic = self.shop.settings.topic_events
        return key_base(self.shop.settings.redis_prefix) + f"replay-until:{topic}:{partition}"

    async def start_replays(self, assigned: set[int], undos: dict[int, Undo]) -> None:
        """Settling an assignment, after the newer stored models were taken: every assigned
        partition whose undo hash names envelopes (its owner wrote after storing its
        models, then died or was cut off) goes back to the stored models and the envelopes
        as they were (:meth:`roll_back`) and is read again from there (:attr:`replays`;
        its committed offset too, so that a stop, a crash or a rebalance during the re-read
        resumes it); the highest offset whose outputs were already sent is taken from Redis
        for every assigned partition, so the batches up to it send nothing again."""
        back: dict[int, Entries] = {}
        for p in sorted(assigned):
            undo, offset = undos[p], undos[p].offset
            if undo.epoch is None or offset is None:
                continue
            entries = undo.entries or {}
            if entries and await self.replayable(p, offset):
                back[p] = entries
            self.undo.begin(p, undo.epoch, entries)
        await self.first_epochs([p for p in sorted(assigned) if undos[p].epoch is None
                                 and undos[p].entries is not None])  # fmt: skip
        put_back = self.roll_back(back)
        again = {p: (undos[p].offset or 0) + 1 for p in back}
        if back:
            log.info("partitions %s: back to their stored models; envelopes put back: %s; "
                     "read again from %s; outputs already sent up to %s", sorted(back),
                     put_back, again, self.replay_until)  # fmt: skip
        redis, parts = self.shop.runtime.redis, sorted(assigned)
        if not parts:
            return
        keys = [self.until_key(p) for p in parts]
        stored = await self.retry("reading the replays under way", lambda: redis.mget(keys))
        for p, raw in zip(parts, stored, strict=True):
            if raw is not None:
                self.replay_until[p] = max(self.replay_until.get(p, -1), int(raw))
        mine = {self.until_key(p): self.replay_until[p] for p in back if p in self.replay_until}
        if mine:
            await self.retry("noting the replays under way", lambda: redis.mset(mine))
        self.replays.update(again)
        consumer = self.shop.app.consumer
        commit_back = getattr(consumer, "commit_back", None)
        if again and commit_back is not None:
            topic = self.shop.settings.topic_events
            if not await commit_back({TP(topic, p): offset for p, offset in again.items()}):
                log.warning("partitions %s: the committed offset could not be set back to "
                            "the stored models (a rebalance?): their models are not stored "
                            "until the re-read has passed the crash point, so whoever reads "
                            "them next goes back to the same models", sorted(again))  # fmt: skip

    async def replayable(self, partition: int, offset: int) -> bool:
        """Whether ``partition`` can go back to its models stored at ``offset``: the log
        holds every record after it (a partition whose log start is unknown or past it is
        not rolled back: that would lose the events of the deleted records) and the models
        are there (taken into :attr:`models` then; offset -1: models that learned nothing)."""
        start = self.log_starts.get(partition)
        if start is None:
            start = await self.ask_log_start(partition)
        if start is None or start > offset + 1:
            log.warning("partition %d: records after its stored models (offset %d) are not all "
                        "in the log (log start %s): its envelopes stay as they are and the "
                        "models go on without those events", partition, offset,
                        start)  # fmt: skip
            return False
        if offset < 0:
            self.models.parts.pop(partition, None)
            return True
        redis = self.shop.runtime.redis
        fetch = self.handover.fetch
        models = await self.retry("reading stored models", lambda: fetch(redis, partition, offset))
        if models is None:
            log.error("partition %d: the models stored for offset %d are missing or refused: "
                      "its envelopes stay as they are", partition, offset)  # fmt: skip
            return False
        self.models.parts[partition] = models
        self.models.upgrade(self.fresh)
        return True

    async def ask_log_start(self, partition: int) -> int | None:
        """The log start of ``partition``, asked now, :data:`LOG_START_ATTEMPTS` times if
        the request fails (a broker restarting or a leader moving must not cost the
        roll-back: without the log start the partition is not rolled back and its models
        miss the events since their store); None if the broker does not say."""
        tp = TP(self.shop.settings.topic_events, partition)
        for attempt in range(1, LOG_START_ATTEMPTS + 1):
            try:
                starts = await asyncio.wait_for(
                    self.shop.app.consumer.earliest_offsets(tp), LOG_ENDS_TIMEOUT_S
                )
                break
            except Exception as exc:  # noqa: BLE001 - asked again, then not rolled back
                log.warning("could not read the log start of partition %d (attempt %d of "
                            "%d): %r", partition, attempt, LOG_START_ATTEMPTS, exc)  # fmt: skip
                if attempt < LOG_START_ATTEMPTS:
                    await asyncio.sleep(LOG_START_PAUSE_S * attempt)
        else:
            return None
        start = starts.get(tp)
        if start is not None:
            self.log_starts[partition] = int(start)
        return None if start is None else int(start)

    async def first_epochs(self, partitions: list[int]) -> None:
        """Partitions without an undo hash: one starts at epoch -1 if nothing was ever stored
        of it and neither the table nor our models hold anything of it (a new deployment);
        otherwise its first stored models start one (until then a crash costs learning)."""
        candidates = [p for p in partitions if p not in self.models.parts
                      or self.handover.offset(self.models.parts[p], p) < 0]  # fmt: skip
        if not candidates:
            return
        held = {Envelope.from_bytes(raw).partition for raw in self.shop.profiles.data.values()}
        redis = self.shop.runtime.redis
        for p in candidates:
            if p in held or p not in self.sources.tokens:
                continue
            owner = (self.sources.field(p), self.sources.tokens[p])
            await self.retry("starting an undo epoch", lambda p=p, owner=owner:  # type: ignore[misc]
                             self.undo.first_epoch(redis, p, self.handover.key(p),
                                                   owner))  # fmt: skip

    def take_replays(self) -> dict[int, int]:
        """The partitions to read again, from which offset (settled since the last call)."""
        again, self.replays = self.replays, {}
        return again

    async def plan_replays(self, partitions: set[int]) -> None:
        """At assignment, before the table's recovery: claim the partitions (a worker that
        owned them before and wakes up now is fenced from here on: its undo writes and model
        stores are refused), then start those whose undo hash names envelopes at their
        stored models' offset + 1 (:attr:`replay_from`, for the consumer's first seek), so
        the batches read again are cut as the first time (a segment is decided once per user
        and batch); the envelopes are put back when settling, after the recovery. Redis
        through a client of its own (the worker's connects only after the recovery)."""
        parts = sorted(partitions)
        if not self.undo.enabled or not parts:
            return
        client = redis_client(self.shop.settings.redis_url)
        try:
            await asyncio.wait_for(self.sources.claim(client, parts), PLAN_TIMEOUT_S)
            pipe = client.pipeline(transaction=False)
            for p in parts:
                pipe.hget(self.undo.hash_key(p), EPOCH)
                pipe.hlen(self.undo.hash_key(p))
            found = await asyncio.wait_for(pipe.execute(), PLAN_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - settling claims and reads them again
            log.warning("could not claim %s and read their undo hashes at assignment: %r",
                        parts, exc)  # fmt: skip
            return
        finally:
            await client.aclose()
        for i, p in enumerate(parts):
            raw, size = found[2 * i], int(found[2 * i + 1])
            offset = offset_of(raw.decode("utf-8", "replace")) if raw is not None else None
            start = self.log_starts.get(p)
            if offset is not None and size > 1 and start is not None and start <= offset + 1:
                self.replay_from[p] = offset + 1
        if self.replay_from:
            log.info("partitions to read again from their stored models: %s", self.replay_from)

    async def store_models(self) -> None:
        """At a checkpoint: the models of the partitions this worker owns go to Redis (their
        table was flushed to Kafka with the checkpoint), each starting a new undo epoch."""
        owned = sorted(p for p in self.sources.tokens if p in self.models.parts)
        if not self.handover.enabled or not owned:
            return
        redis, epochs = self.shop.runtime.redis, self.new_epochs(owned)
        stored = await self.retry("storing the partition models", lambda: self.handover.give(
            redis, self.models, owned, or_equal=True, owner=self.sources,
            epochs=epochs))  # fmt: skip
        self.begin_epochs(stored, epochs)

    def new_epochs(self, partitions: Iterable[int]) -> dict[int, str]:
        """New undo epochs for the models of ``partitions`` we own, except those being read
        again: until the re-read passes the crash point, whoever reads them next must go
        back to the models their hash was started at (the committed offset may be past the
        re-read)."""
        return {p: new_epoch(self.handover.offset(self.models.parts[p], p))
                for p in partitions if p in self.sources.tokens and p in self.models.parts
                and p not in self.replay_until}  # fmt: skip

    def begin_epochs(self, stored: dict[int, bool], epochs: dict[int, str]) -> None:
        for p, new in stored.items():
            if new and p in epochs:
                self.undo.begin(p, epochs[p])

    async def rewrite_models(self) -> int:
        """After an erasure: our copies of the models (now without the user) replace stored
        ones as new as them (which may remember the user); those of partitions we own start
        new undo epochs (the table flushed first), the others are stored only where no undo
        hash exists. Returns the bundles stored."""
        if not self.handover.enabled or not self.models.parts:
            return 0
        await self.shop.app.producer.flush()
        redis, held = self.shop.runtime.redis, sorted(self.models.parts)
        epochs = self.new_epochs(held)
        stored = await self.retry("rewriting stored models", lambda: self.handover.give(
            redis, self.models, held, or_equal=True, owner=self.sources,
            epochs=epochs))  # fmt: skip
        self.begin_epochs(stored, epochs)
        return sum(stored.values())

    async def keep_before(self, changes: list[tuple[str, int, bytes | None]]) -> None:
        """Envelopes about to be written, with their bytes now: the first write of each user
        in its partition's undo epoch keeps those (raises Fenced if it moved)."""
        if not changes:
            return
        redis, owners = self.shop.runtime.redis, self.owners()
        await self.retry("keeping the envelopes before the write",
                         lambda: self.undo.stash(redis, owners, changes))  # fmt: skip

    async def forget_undo(self, uid: str) -> None:
        """An erased user must never come back from an undo hash: their entries become
        "did not exist" (a user without one is not put back anyway)."""
        changes = [(uid, p, None) for p, users in self.undo.stashed.items() if uid in users]
        if changes:
            redis, owners = self.shop.runtime.redis, self.owners()
            await self.retry("erasing from the undo hashes", lambda: self.undo.stash(
                redis, owners, changes, overwrite=True))  # fmt: skip

    def owners(self) -> dict[int, tuple[str, str]]:
        return {p: (self.sources.field(p), t) for p, t in self.sources.tokens.items()}

    async def replay_passed(self, partitions: set[int]) -> None:
        """The re-read of ``partitions`` went past the outputs already sent."""
        for p in partitions:
            self.replay_until.pop(p, None)
        redis = self.shop.runtime.redis
        keys = [self.until_key(p) for p in sorted(partitions)]
        await self.retry("ending the replays", lambda: redis.delete(*keys))

    def note_log_starts(self, log_starts: dict[int, int]) -> None:
        """The log starts of assigned partitions (asked at assignment)."""
        self.log_starts.update(log_starts)

    def replayed(self, partition: int, offset: int) -> bool:
        """Whether the record's batch delivered its outputs before the restart."""
        return offset <= self.replay_until.get(partition, -1)

    def models_for(self, partition: int) -> Models:
        """The models of one source partition (each learns only from its partition)."""
        return self.models.get(partition, self.fresh)

    def state_for(self, partition: int) -> ChurnState:
        """The partition's churn state, rebuilt from the stored tracks on first use."""
        state = self.states.get(partition)
        if state is None:
            tracks = {}
            for uid, raw in self.shop.profiles.data.items():
                env = Envelope.from_bytes(raw)
                if env.partition == partition and env.track is not None:
                    tracks[uid] = track_from_list(env.track)
            state = self.states[partition] = rebuild(tracks, self.churn_cfg)
            log.info("partition %d: churn state rebuilt for %d users", partition, len(tracks))
        return state

    # --- rebalances -----------------------------------------------------------------------
    def on_revoked(self, partitions: Iterable[int]) -> None:
        """Another worker may own these next: rebuild their state from the table if they
        come back."""
        partitions = list(partitions)
        self.reset_state(partitions)
        for partition in partitions:
            self.replay_from.pop(partition, None)
            self.replay_until.pop(partition, None)  # the next owner reads it from Redis

    def reset_state(self, partitions: Iterable[int]) -> None:
        """Drop what memory holds of ``partitions``: rebuilt from the table on next use."""
        self.envelopes.clear()  # rebuilt from the table's bytes (a rebalance is rare)
        for partition in partitions:
            self.states.pop(partition, None)
            self.anchors.pop(partition, None)

    async def check_sources(self, assigned: set[int]) -> None:
        """The topic's identity, fences against log ends, fresh owner tokens."""
        redis, sources = self.shop.runtime.redis, self.sources
        topic = self.shop.settings.topic_events
        await self.retry("checking the topic's identity", lambda: sources.identify(redis))
        if assigned:
            tps = [TP(topic, p) for p in sorted(assigned)]
            ends = await log_ends(self.shop.app.consumer, tps)
            highwaters = {tp.partition: int(end) for tp, end in ends.items()}
            table = self.shop.profiles.data
            await self.retry("checking the fences", lambda: sources.verify(redis, highwaters,
                                                                           table))  # fmt: skip
        await self.retry("claiming the partitions", lambda: sources.claim(redis, assigned))
        log.info("partitions %s of %s (id %s) checked and claimed: owner tokens %s",
                 sorted(assigned), topic, sources.topic_id or "unknown",
                 sources.tokens)  # fmt: skip

    async def hand_over(self) -> None:
        """Giving partitions up (revocation, shutdown): store every bundle held for the
        partitions' next owners (an older one never replaces a newer stored one).

        Bounded in time (a rebalance must not wait on Redis); if it fails, the next owner
        starts those models from its own copy and this worker keeps its copies.
        """
        if not self.handover.enabled or not self.shop.runtime.ready:
            return

        async def give() -> dict[int, bool]:
            async with self.lock:  # not in the middle of a batch
                # the table's changelog first: a partition we own starts a new undo epoch
                # at the models' offset, which its table must then be durably at
                await self.shop.app.producer.flush()
                held, epochs = sorted(self.models.parts), self.new_epochs(self.models.parts)
                stored = await self.handover.give(self.shop.runtime.redis, self.models, held,
                                                  owner=self.sources, epochs=epochs)  # fmt: skip
                self.begin_epochs(stored, epochs)
                return stored

        try:
            given = await asyncio.wait_for(give(), HANDOVER_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a rebalance goes on regardless
            log.warning("storing partition models for the next owners failed: %r", exc)
            return
        self.given = set(given)
        if given:
            log.info("partitions %s: models handed over (stored: %s)", sorted(given),
                     sorted(p for p, new in given.items() if new))  # fmt: skip

    def on_assigned(self, partitions: set[int]) -> None:
        """At assignment: drop stored bundles we did not get back; settle before a batch."""
        if self.handover.enabled:
            for p in self.given - partitions:
                self.models.parts.pop(p, None)  # stored in Redis, at least as new as ours
            self.given = set()
        self.to_settle = set(partitions)

    async def settle(self) -> None:
        """Before the first batch after an assignment (Redis is up by then): check the
        sources and claim the partitions (:class:`~streams.worker.sources.Sources`; raises
        StateDiverged), then store and drop the models of partitions we do not have, take
        newer stored ones of those we have, and put back partitions whose previous owner
        wrote after storing its models (:meth:`start_replays`; the agent then reads them
        again from :attr:`replays`)."""
        if self.to_settle is None:
            return
        assigned, self.to_settle = self.to_settle, None
        log.info("settling the assigned partitions %s before their first batch", sorted(assigned))
        redis = self.shop.runtime.redis
        self.replay_from = {}  # the consumer's first seek is done; a later one is not ours
        self.undo.drop(set(self.undo.epochs))  # read again below, for the assigned ones
        await self.check_sources(assigned)
        await self.tombstones.settle(self.sources.incarnation, assigned)
        if not self.handover.enabled:
            return
        parts = sorted(assigned)
        try:  # retried while Redis is unreachable; any other error must not fail the batch
            released, taken = await self.retry(
                "settling the models of assigned partitions",
                lambda: self.handover.settle(redis, self.models, assigned),
            )
            undos = await self.retry("reading the undo hashes",
                                     lambda: self.undo.read(redis, parts))  # fmt: skip
        except Exception:
            log.exception("settling the partition models failed; going on with our copies")
            return
        if released:
            log.info("partitions %s: models of partitions owned elsewhere released", released)
        if taken:
            self.models.upgrade(self.fresh)
            log.info("partitions %s: took over the models their previous owner stored", taken)
        await self.start_replays(assigned, undos)

    def seen(self, partitions: Iterable[int], wall_s: float) -> None:
        """Records of ``partitions`` were just processed: their idle time starts now."""
        for p in partitions:
            state = self.states.get(p)
            if state is not None:
                self.anchors[p] = (wall_s, state.clock_ms)


async def log_ends(consumer: Any, tps: list[TP], timeout_s: float | None = None) -> Any:
    """The log ends of ``tps`` (the consumer's ``highwaters``), asked again with a warning
    each time the broker does not answer within ``timeout_s`` (default
    :data:`LOG_ENDS_TIMEOUT_S`): the first batch after an assignment waits for them, and an
    unanswered request must not hold it up silently (a clean-clone CI run once saw a
    restarted worker process nothing for 90 s, before any of this step's log lines).

    >>> class Slow:
    ...     calls = 0
    ...     async def highwaters(self, *tps):
    ...         Slow.calls += 1
    ...         await asyncio.sleep(3600 if Slow.calls == 1 else 0)
    ...         return {tp: 7 for tp in tps}
    >>> asyncio.run(log_ends(Slow(), [TP("t", 0)], timeout_s=0.01)), Slow.calls
    ({TP(topic='t', partition=0): 7}, 2)
    """
    timeout = LOG_ENDS_TIMEOUT_S if timeout_s is None else timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.wait_for(consumer.highwaters(*tps), timeout)
        except TimeoutError:
            log.warning("the broker did not tell the log ends of partitions %s within %.0f s "
                        "(attempt %d); asking again", [tp.partition for tp in tps], timeout,
                        attempt)  # fmt: skip
