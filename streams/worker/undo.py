"""The envelopes as they were when a partition's models were last stored, kept in Redis, so
that neither a crash nor a move without hand-over costs any learning.

The profiles table is written after every batch; a partition's models reach Redis only at a
checkpoint (every ``SHOPSTREAM_CHECKPOINT_INTERVAL_S``) or a hand-over
(:mod:`streams.worker.handover`), with the source offset ``E`` they include. If the owner dies
later (a crash, ``kill -9`` during a rebalance, a worker frozen until its partition moved),
whoever reads the partition next has models at ``E`` while the table holds every batch up
to the crash: the events in between were applied to the profiles but would never teach the
models, and every alert, segment change and anomaly derived from them would differ from a
run without the fault.

So the table is made to go back to ``E`` too. Each partition has an undo hash in Redis,
``<prefix>undo:<topic>:<partition>``, whose ``@epoch`` field names the epoch: ``E:<nonce>``
(``E = -1``: models that learned nothing, for a partition the table holds nothing of; the
random nonce tells apart two epochs started at the same offset). Before a user's envelope is
first written after ``E``, its bytes as they were (or "did not exist") are added to the hash
(``HSETNX``: the state at ``E`` is kept, never a later one), in one script that also checks
the writer still owns the partition and the epoch it knows is still the stored one. Storing
models for a new offset and starting the new, empty epoch are one script
(:data:`streams.worker.handover._GIVE`), so the two never disagree.

Whoever takes a partition over (the next owner, or the same worker after a restart) reads
its hash first: if it names envelopes, it puts them back (table and changelog), takes the
stored models of offset ``E`` and reads the partition again from ``E + 1``: profiles, churn
tracks and models learn those events again, in order, exactly as the first time, while the
Redis stores skip what they applied (their own offset fences) and the outputs already
delivered are not sent again (:mod:`streams.worker.partitions`).

Every entry is signed with ``SHOPSTREAM_CHECKPOINT_KEY`` (HMAC-SHA256 over the hash's key,
the epoch with its nonce, the user and the bytes): whoever can write to Redis can delete
entries, not plant envelopes (nor copy them to another partition or epoch); a partition with
an entry or an ``@epoch`` that does not parse or verify is not rolled back.

>>> store = UndoStore(b"k", "undo:", "owners")
>>> raw = store.entry(0, "7:ab", "u1", b'{"p":1}')
>>> store.parse(0, "7:ab", "u1", raw), store.parse(0, "7:cd", "u1", raw)  # its epoch only
(b'{"p":1}', Ellipsis)
>>> store.parse(1, "7:ab", "u1", raw)  # its partition only
Ellipsis
>>> store.parse(0, "7:ab", "u1", store.entry(0, "7:ab", "u1", None)) is None
True
>>> offset_of("7:ab"), offset_of("-1:ab"), offset_of("x")
(7, -1, None)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

from models.similarity import key_base
from streams.core.errors import Fenced
from streams.core.settings import Settings

log = logging.getLogger(__name__)

#: what a partition's hash holds: user -> envelope bytes at the epoch (None: did not exist)
Entries = dict[str, bytes | None]

#: Adds entries to an undo hash. KEYS[1] the hash, KEYS[2] the owners hash; ARGV[1] the
#: epoch the writer knows, ARGV[2] its owner field, ARGV[3] its token, ARGV[4] "1" to
#: overwrite (an erasure) or "0" (the state at the epoch is kept), then user, entry pairs.
#: Returns the entries added, -1 if the epoch moved on, -2 if the partition moved.
_STASH = """
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then return -2 end
if redis.call('HGET', KEYS[1], '@epoch') ~= ARGV[1] then return -1 end
local n = 0
for i = 5, #ARGV, 2 do
  if ARGV[4] == '1' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    n = n + 1
  else
    n = n + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return n
"""

#: The first epoch of a partition nobody stored models of: KEYS[1] the undo hash, KEYS[2]
#: the models' hash, KEYS[3] the owners hash; ARGV[1] the owner field, ARGV[2] the token,
#: ARGV[3] the epoch's name. Returns 1 if started, 0 if either hash exists, -2 if the
#: partition moved.
_FIRST = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return -2 end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '@epoch', ARGV[3])
return 1
"""

EPOCH = "@epoch"


def undo_base(settings: Settings) -> str:
    """The undo hashes' keys without the partition: ``<prefix>undo:<topic>:``."""
    return key_base(settings.redis_prefix) + f"undo:{settings.topic_events}:"


def new_epoch(offset: int) -> str:
    """The name of a new epoch at ``offset``: ``<offset>:<random nonce>``."""
    return f"{offset}:{secrets.token_hex(6)}"


def offset_of(epoch: str) -> int | None:
    """The offset an epoch starts at (None: not an epoch's name)."""
    head, sep, nonce = epoch.partition(":")
    try:
        return int(head) if sep and nonce and int(head) >= -1 else None
    except ValueError:
        return None


@dataclass
class Undo:
    """A partition's undo hash as read: its epoch (None: there is none, or it does not parse)
    and entries (None: one does not verify, nothing of the partition is trusted)."""

    epoch: str | None
    entries: Entries | None = field(default_factory=dict)

    @property
    def offset(self) -> int | None:
        """The offset of the models the epoch was started at."""
        return None if self.epoch is None else offset_of(self.epoch)


class UndoStore:
    """The undo hashes of the partitions a worker writes."""

    def __init__(self, key: bytes, base: str, owners_key: str) -> None:
        self.key, self.base, self.owners_key = key, base, owners_key
        #: partition -> the epoch this worker writes in (only partitions it owns)
        self.epochs: dict[int, str] = {}
        #: partition -> users with an entry in that epoch
        self.stashed: dict[int, set[str]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.key)

    def hash_key(self, partition: int) -> str:
        return f"{self.base}{partition}"

    def begin(self, partition: int, epoch: str, users: Iterable[str] = ()) -> None:
        """From now on, write ``partition``'s entries into ``epoch`` (``users`` have one)."""
        self.epochs[partition] = epoch
        self.stashed[partition] = set(users)

    def drop(self, partitions: Iterable[int]) -> None:
        """Not ours any more: read again at the next assignment."""
        for p in partitions:
            self.epochs.pop(p, None)
            self.stashed.pop(p, None)

    def wants(self, partition: int, uid: str) -> bool:
        """Whether ``uid``'s bytes before its next write must be kept (its first write in
        the partition's epoch): callers read the table only for those."""
        return partition in self.epochs and uid not in self.stashed[partition]

    async def stash(
        self, redis: Any, owners: dict[int, tuple[str, str]],
        changes: Iterable[tuple[str, int, bytes | None]], *, overwrite: bool = False,
    ) -> None:  # fmt: skip
        """``(user, partition, bytes before this write)`` of envelopes about to be written:
        the first of each user in its partition's epoch is added (``overwrite``: replaced,
        for an erasure). ``owners``: partition -> (owner field, our token). Raises Fenced if
        a partition moved or its models were stored by another worker since."""
        grouped: dict[int, list[tuple[str, bytes | None]]] = {}
        for uid, partition, before in changes:
            if partition in self.epochs and (overwrite or uid not in self.stashed[partition]):
                grouped.setdefault(partition, []).append((uid, before))
        if not grouped:
            return
        pipe = redis.pipeline(transaction=False)
        for p, items in sorted(grouped.items()):
            epoch = self.epochs[p]
            args: list[Any] = [epoch, *owners.get(p, ("", "none")), "1" if overwrite else "0"]
            for uid, before in items:
                args += [uid, self.entry(p, epoch, uid, before)]
            pipe.eval(_STASH, 2, self.hash_key(p), self.owners_key, *args)
        results = await pipe.execute()
        for (p, items), result in zip(sorted(grouped.items()), results, strict=True):
            if int(result) < 0:
                raise Fenced(f"partition {p}: "
                             + ("it moved to another worker" if int(result) == -2 else
                                "its models were stored by another worker"))  # fmt: skip
            self.stashed[p].update(uid for uid, _ in items)

    async def read(self, redis: Any, partitions: list[int]) -> dict[int, Undo]:
        """The undo hashes of ``partitions`` as stored (verified)."""
        pipe = redis.pipeline(transaction=False)
        for p in partitions:
            pipe.hgetall(self.hash_key(p))
        return {p: self.parse_hash(p, raw)
                for p, raw in zip(partitions, await pipe.execute(), strict=True)}  # fmt: skip

    def parse_hash(self, partition: int, raw: dict[bytes, bytes]) -> Undo:
        """One partition's hash (``HGETALL``) as an :class:`Undo`; anything that does not
        parse or verify is logged and makes the partition untrusted, never raises."""
        epoch_raw = raw.get(EPOCH.encode())
        if epoch_raw is None:
            return Undo(None)
        epoch = epoch_raw.decode("utf-8", "replace")
        if offset_of(epoch) is None:
            log.error("partition %d: its undo hash names no epoch (%r): it is not rolled back",
                      partition, epoch[:40])  # fmt: skip
            return Undo(None, None)
        entries: Entries = {}
        for key, value in raw.items():
            if key == EPOCH.encode():
                continue
            try:
                uid = key.decode()
            except UnicodeDecodeError:
                uid = None
            before = self.parse(partition, epoch, uid, value) if uid is not None else ...
            if before is Ellipsis:
                log.error("partition %d: the undo entry of %r does not verify (tampered, or "
                          "written with another key): the partition is not rolled back",
                          partition, key[:40])  # fmt: skip
                return Undo(epoch, None)
            entries[uid] = before  # type: ignore[index]
        return Undo(epoch, entries)

    async def first_epoch(self, redis: Any, partition: int, models_key: str,
                          owner: tuple[str, str]) -> bool:  # fmt: skip
        """Start epoch -1 of a partition nothing was stored of (see :data:`_FIRST`)."""
        epoch = new_epoch(-1)
        result = int(await redis.eval(_FIRST, 3, self.hash_key(partition), models_key,
                                      self.owners_key, *owner, epoch))  # fmt: skip
        if result == 1:
            self.begin(partition, epoch)
        return result == 1

    def entry(self, partition: int, epoch: str, uid: str, before: bytes | None) -> bytes:
        payload = b"-" if before is None else b"=" + before
        return self._mac(partition, epoch, uid, payload).encode() + payload

    def parse(
        self, partition: int, epoch: str, uid: str, raw: bytes
    ) -> bytes | EllipsisType | None:
        """The bytes an entry holds (None: did not exist), ``...`` if it does not verify."""
        mac, payload = raw[:64], raw[64:]
        good = self._mac(partition, epoch, uid, payload).encode()
        if not payload or not hmac.compare_digest(mac, good):
            return ...
        return None if payload == b"-" else payload[1:]

    def _mac(self, partition: int, epoch: str, uid: str, payload: bytes) -> str:
        body = f"{self.hash_key(partition)}\x00{epoch}\x00{uid}\x00".encode() + payload
        return hmac.new(self.key, body, hashlib.sha256).hexdigest()

