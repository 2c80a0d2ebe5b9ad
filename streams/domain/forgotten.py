"""Erasure fences: events of a forgotten user that Kafka delivers again stay forgotten.

``forget`` (:mod:`streams.worker.erasure`) deletes the user's envelope, and with it the
per-user offset fence (:mod:`streams.domain.envelope`). Without something in its place, a
record of the user delivered again — a batch processed but not committed before a crash, a
group whose offsets were set back — would be a *fresh* event of an unknown user and bring
the profile and its outputs back. So at the erasure the worker records an **erasure fence**
per source the user's events came from (``incarnation:partition``, as envelopes name it):
the offset up to which that partition's records are from before the erasure. That is the
partition's log end at the erasure (every record produced before the erasure is below it,
also those the worker had not reached yet), and at least the user's own fence. While a
batch is applied, an event of the user at or below the fence of its source is dropped
(counted, never dead-lettered: it was legitimately erased); a later one is the user coming
back after the erasure and is applied as any new user's.

Only a digest of the user id is kept (:func:`user_digest`). The fences live in Redis
(:mod:`streams.worker.tombstones`) and in memory for the partitions a worker holds.

>>> from streams.core.events import Event, Record
>>> fences = ErasureFences()
>>> fences.add(user_digest("u1"), {"ab:0": 9})
>>> at = lambda o, p=0: Record("t", p, o, b"u1", b"", incarnation="ab")
>>> ev = Event("e", "search", "u1", "s", 0)
>>> kept, dropped = fences.screen([(at(7), ev), (at(9), ev), (at(10), ev), (at(3, p=1), ev)])
>>> [r.offset for r, _ in kept], [r.offset for r, _ in dropped]
([10, 3], [7, 9])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streams.core.events import Event, Record
from streams.domain.envelope import Envelope
from streams.domain.privacy import pseudonymise


def user_digest(uid: str) -> str:
    """What an erasure fence keeps of the user id: 128 bits of BLAKE2b, hex.

    A digest of a guessable id (an e-mail address) can be confirmed by whoever guesses it;
    with pseudonymisation on, ``uid`` is already a keyed pseudonym.

    >>> user_digest("u42")
    '01769d714d53517cb1237c9878c06f96'
    """
    h = _DIGEST.copy()  # half the cost of a new hasher with its parameters
    h.update(uid.encode())
    return h.hexdigest()


_DIGEST = hashlib.blake2b(digest_size=16, person=b"shopstream-erase")


def source_incarnation(source: str) -> str:
    """The incarnation part of a fence source (``incarnation:partition``).

    >>> source_incarnation("f689bbe2:3"), source_incarnation(":0")
    ('f689bbe2', '')
    """
    return source.rsplit(":", 1)[0]


def erasure_offsets(env: Envelope, incarnation: str, log_end: int | None) -> dict[str, int]:
    """The erasure fences of a user whose envelope is ``env``: source -> offset.

    Every source of the current ``incarnation`` the envelope fences keeps its fence (an old
    partition of a user moved by ``shopstream repartition`` too); the user's partition gets
    at least ``log_end - 1`` (``log_end``: the offset the partition's next record will get,
    ``None`` when it could not be read). Sources of another incarnation (a topic deleted and
    created again) are left out: their records can never be delivered again.

    >>> from streams.domain.profile import Profile
    >>> env = Envelope(profile=Profile("u", 0, 0), partition=1, offset=7,
    ...                fences={"old:1": 50, "ab:0": 4, "ab:1": 7})
    >>> erasure_offsets(env, "ab", 12)
    {'ab:0': 4, 'ab:1': 11}
    >>> erasure_offsets(env, "ab", None)
    {'ab:0': 4, 'ab:1': 7}
    >>> erasure_offsets(Envelope(profile=Profile("u", 0, 0), partition=2, offset=5), "ab", None)
    {'ab:2': 5}
    """
    fences = dict(env.fences)
    if not fences and env.offset >= 0:  # an envelope of a version without named sources
        fences[f"{incarnation}:{env.partition}"] = env.offset
    out = {s: o for s, o in fences.items() if source_incarnation(s) == incarnation}
    if log_end is not None and env.partition >= 0:
        own = f"{incarnation}:{env.partition}"
        out[own] = max(out.get(own, -1), log_end - 1)
    return {s: o for s, o in out.items() if o >= 0}


@dataclass(slots=True)
class ErasureFences:
    """The erasure fences of the sources a worker holds: source -> {user digest: offset}."""

    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    #: every digest of ``by_source`` (made again after a change)
    _digests: set[str] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return sum(len(fences) for fences in self.by_source.values())

    def add(self, digest: str, offsets: Mapping[str, int]) -> None:
        """Record a user's fences (a fence never moves back)."""
        self._digests = None
        for source, offset in offsets.items():
            fences = self.by_source.setdefault(source, {})
            fences[digest] = max(fences.get(digest, -1), offset)

    def hold(self, loaded: Mapping[str, Mapping[str, int]]) -> None:
        """Keep exactly the ``loaded`` sources (an assignment: what Redis holds for them)."""
        self._digests = None
        self.by_source = {s: dict(f) for s, f in loaded.items() if f}

    def purge(self, source: str, log_start: int) -> int:
        """Drop the fences of ``source`` below ``log_start`` (the first offset Kafka still
        holds: every record they cover is gone). Returns how many were dropped.

        >>> f = ErasureFences({"ab:0": {"x": 4, "y": 9}})
        >>> f.purge("ab:0", 5), f.by_source
        (1, {'ab:0': {'y': 9}})
        """
        self._digests = None
        fences = self.by_source.get(source, {})
        gone = [d for d, offset in fences.items() if offset < log_start]
        for digest in gone:
            del fences[digest]
        if not fences:
            self.by_source.pop(source, None)
        return len(gone)

    def fence_of(self, source: str, uid: str) -> int:
        """The erasure fence of ``uid`` on ``source`` (-1: none)."""
        fences = self.by_source.get(source)
        return fences.get(user_digest(uid), -1) if fences else -1

    def covers(self, rec: Record, uid: str) -> bool:
        """Whether ``rec`` (a record of ``uid``) is at or below the user's erasure fence of
        its source."""
        return rec.offset <= self.fence_of(rec.fence_key, uid)

    def screen(
        self, valid: Sequence[tuple[Record, Event]]
    ) -> tuple[list[tuple[Record, Event]], list[tuple[Record, Event]]]:
        """``(events to apply, events of erased users to drop)``, each in order. One digest
        per distinct user of the batch; the events are looked at one by one only when one of
        the users has a fence."""
        if not self.by_source:
            return list(valid), []
        if self._digests is None:
            self._digests = {d for fences in self.by_source.values() for d in fences}
        digests = self._digests
        erased = {u for u in {e.user_id for _, e in valid} if user_digest(u) in digests}
        if not erased:
            return list(valid), []
        kept: list[tuple[Record, Event]] = []
        dropped: list[tuple[Record, Event]] = []
        for rec, event in valid:
            uid = event.user_id
            gone = uid in erased and rec.offset <= self.fence_of(rec.fence_key, uid)
            (dropped if gone else kept).append((rec, event))
        return kept, dropped

    def screen_rejected(
        self, rejected: Iterable[tuple[Record, str, str]], pseudonymise_key: bytes = b""
    ) -> tuple[list[tuple[Record, str, str]], int]:
        """``(records to dead-letter, how many were dropped)``: a rejected record keyed by an
        erased user (the key is the user id, pseudonymised like the events' ids), at or below
        the fence, was dead-lettered before the erasure and is not published again.

        >>> f = ErasureFences({":0": {user_digest("u1"): 5}})
        >>> recs = [(Record("t", 0, o, k, b"{oops"), "not_json", "") for o, k in
        ...         [(4, b"u1"), (6, b"u1"), (4, b"u2"), (4, None), (4, b"\\xff")]]
        >>> kept, n = f.screen_rejected(recs)
        >>> [(r.offset, r.key) for r, _, _ in kept], n
        ([(6, b'u1'), (4, b'u2'), (4, None), (4, b'\\xff')], 1)
        """
        rejected = list(rejected)
        if not self.by_source:
            return rejected, 0
        kept = []
        for item in rejected:
            rec = item[0]
            uid = _key_user(rec.key, pseudonymise_key)
            if uid is None or not self.covers(rec, uid):
                kept.append(item)
        return kept, len(rejected) - len(kept)


def _key_user(key: bytes | None, pseudonymise_key: bytes) -> str | None:
    """The user id a record key names (pseudonymised as events' ids are), if it is text."""
    if key is None:
        return None
    try:
        uid = key.decode()
    except UnicodeDecodeError:
        return None
    return pseudonymise(uid, pseudonymise_key) if pseudonymise_key else uid
