"""What the profile table stores per user, and the per-user fence and de-duplication.

A user's events live on one partition (the record key is ``user_id``; a record whose key
is not its user id is refused at intake), so the :class:`Envelope` can fence them by offset:
an event at or below the offset applied from *its* source — the topic's incarnation and the
partition, :attr:`~streams.core.events.Record.fence_key` — was applied already (a
redelivery). An event from another partition (after partitions were added) or another
incarnation of the topic (recreated) is never taken for one. :func:`classify` tells every
event of a batch apart — fresh, redelivered, duplicate (an ``event_id`` seen recently) or
over the per-minute rate — reading only state that is written together with the effects it
guards, so the answer is the same after a crash.

>>> from streams.core.events import Event, Record
>>> from streams.domain.profile import update_profile
>>> ev = Event("e1", "view", "u1", "s1", 1_709_283_600_000, item_id="i1")
>>> env = Envelope(profile=update_profile(None, ev), fences={":0": 5}, recent=[id_hash("e1")])
>>> batch = [(Record("t", 0, o, b"u1", b""), ev) for o in (5, 6)]
>>> classify(batch, {"u1": env}.get)
['redelivered', 'duplicate']
>>> classify([(Record("t", 1, 5, b"u1", b""), ev)], {"u1": env}.get)  # another partition
['duplicate']
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from streams.core.events import Event, Record
from streams.domain.profile import Profile

#: Event ids remembered per user to drop producer duplicates (same ``event_id`` twice).
RECENT_IDS: Final = 16
#: Sources (incarnation:partition) whose fence a user's envelope keeps (the newest).
MAX_FENCES: Final = 8

Verdict = Literal["fresh", "redelivered", "duplicate", "rate_limited"]
Load = Callable[[str], "Envelope | None"]


@dataclass(slots=True, kw_only=True)
class Envelope:
    """One user's stored state: the profile, its offset fences and its context.

    ``fences`` maps each source the user's events came from (``incarnation:partition``) to
    the offset of the last event applied from it; ``offset``/``partition`` are the last
    event's (``partition`` is also the changelog partition the envelope is written to).
    ``track`` is the user's churn bookkeeping
    (:func:`streams.domain.churn_state.track_to_list`), stored here so it is written, fenced
    and restored together with the profile.
    """

    profile: Profile
    offset: int = -1
    session_id: str = ""
    last_rec_ms: int = -1
    partition: int = -1
    segment: str | None = None
    track: list[Any] | None = None
    recent: list[str] = field(default_factory=list)  # digests of the last event ids applied
    rate: list[int] = field(default_factory=list)  # [record-time minute, events in it]
    fences: dict[str, int] = field(default_factory=dict)
    #: the user's anomaly windows and bot flag (``models.anomaly.AnomalyDetector.export_user``)
    anomaly: list[Any] | None = None
    #: the partition count the user's partition was decided under: set when
    #: ``shopstream repartition`` moved the user (0 before); the newer layout wins when the
    #: table is recovered (``streams.patches.table``)
    layout: int = 0

    def fence(self, rec: Record) -> int:
        """The offset applied from ``rec``'s source (-1: none). An envelope written before
        fences named their source has only ``offset``/``partition``: taken as the current
        incarnation's."""
        if self.fences:
            return self.fences.get(rec.fence_key, -1)
        return self.offset if self.partition == rec.partition else -1

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "f": self.fences,
                "o": self.offset,
                "s": self.session_id,
                "r": self.last_rec_ms,
                "pt": self.partition,
                "sg": self.segment,
                "t": self.track,
                "e": self.recent,
                "rt": self.rate,
                "a": self.anomaly,
                "g": self.layout,
                "p": self.profile,  # orjson serialises the dataclass natively
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        d = orjson.loads(raw)
        return cls(
            profile=Profile.from_dict(d["p"]),
            offset=d["o"],
            session_id=d["s"],
            last_rec_ms=d["r"],
            partition=d.get("pt", -1),
            segment=d.get("sg"),
            track=d.get("t"),
            recent=d.get("e", []),
            rate=d.get("rt", []),
            fences=d.get("f") or {},
            anomaly=d.get("a"),
            layout=d.get("g", 0),
        )


def is_redelivery(env: Envelope | None, rec: Record) -> bool:
    """Whether the event of ``rec`` was already applied to this user's state: its offset is
    at or below the fence of its own source (incarnation and partition).

    >>> from streams.domain.profile import update_profile
    >>> env = Envelope(profile=update_profile(None, Event("e", "search", "u", "s", 0)),
    ...                fences={"ab:0": 5})
    >>> at = lambda p, o, inc="ab": Record("t", p, o, b"u", b"", incarnation=inc)
    >>> is_redelivery(None, at(0, 0)), is_redelivery(env, at(0, 5)), is_redelivery(env, at(0, 6))
    (False, True, False)
    >>> is_redelivery(env, at(1, 5)), is_redelivery(env, at(0, 5, inc="cd"))  # moved, recreated
    (False, False)
    """
    return env is not None and rec.offset <= env.fence(rec)


def classify(
    valid: Sequence[tuple[Record, Event]], load: Load, limit_per_min: int = 0
) -> list[Verdict]:
    """The verdict on each event of a batch, in order.

    *redelivered*: its offset is at or below the user's fence; *duplicate*: its ``event_id``
    is among the user's last :data:`RECENT_IDS` applied ones (or earlier in this batch);
    *rate_limited*: the user already has ``limit_per_min`` events in that minute of Kafka
    record time (:func:`rate_time`: the client's ``ts`` is not trusted here, it would let a
    client spread a flood over invented minutes or lock a user out with a future one);
    *fresh* otherwise.
    """
    verdicts: list[Verdict] = []
    seen: dict[str, tuple[set[str], list[int]]] = {}
    for rec, event in valid:
        env = load(event.user_id)
        if is_redelivery(env, rec):
            verdicts.append("redelivered")
            continue
        if event.user_id not in seen:
            seen[event.user_id] = (set(env.recent), env.rate) if env else (set(), [])
        ids, rate = seen[event.user_id]
        h = id_hash(event.event_id)
        if h in ids:
            verdicts.append("duplicate")
            continue
        bumped = bump_rate(rate, rate_time(rec, event))
        if limit_per_min and bumped[1] > limit_per_min:
            verdicts.append("rate_limited")
            continue
        ids.add(h)
        seen[event.user_id] = (ids, bumped)
        verdicts.append("fresh")
    return verdicts


def last_rec_ms(env: Envelope | None) -> int:
    """Event time of the user's last published recommendation (-1: none, or a new user)."""
    return env.last_rec_ms if env is not None else -1


def rate_time(rec: Record, event: Event) -> int:
    """The instant a rate limit counts an event at: its Kafka record timestamp (the event's
    own ``ts`` only for a record without one, e.g. in offline tools)."""
    return rec.timestamp_ms if rec.timestamp_ms >= 0 else event.ts_ms


def bump_rate(rate: list[int], ts_ms: int) -> list[int]:
    """``[minute, events in it]`` after one more event at ``ts_ms`` (record time).

    A record up to a minute older than the current window counts in it (producers' clocks
    differ a little); a window further ahead than that is not credible (stored by an older
    version from a client's ``ts``) and starts over, so it can never lock a user out.

    >>> bump_rate([], 120_000), bump_rate([2, 5], 150_000), bump_rate([2, 5], 200_000)
    ([2, 1], [2, 6], [3, 1])
    >>> bump_rate([2, 5], 90_000), bump_rate([99_999_999, 600], 200_000)
    ([2, 6], [3, 1])
    """
    minute = ts_ms // 60_000
    if rate and rate[0] - 1 <= minute <= rate[0]:
        return [rate[0], rate[1] + 1]
    return [minute, 1]


@functools.lru_cache(maxsize=4096)  # a batch asks twice per event (classify, applied)
def id_hash(event_id: str) -> str:
    """A short, stable digest of an event id (what envelopes remember).

    >>> id_hash("e-1001")
    'f1cd5725cd0d'
    """
    return hashlib.blake2b(event_id.encode(), digest_size=6).hexdigest()


def applied(env: Envelope | None, rec: Record, event: Event, profile: Profile) -> Envelope:
    """The user's envelope after ``event`` (at ``rec``) was applied, giving ``profile``."""
    if env is None:
        return Envelope(
            profile=profile, offset=rec.offset, session_id=event.session_id,
            partition=rec.partition, recent=[id_hash(event.event_id)],
            rate=bump_rate([], rate_time(rec, event)), fences={rec.fence_key: rec.offset},
        )  # fmt: skip
    if not env.fences and env.offset >= 0:  # an envelope of a version without named sources
        env.fences[f"{rec.incarnation}:{env.partition}"] = env.offset
    env.fences.pop(rec.fence_key, None)  # re-inserted last: the newest source stays
    env.fences[rec.fence_key] = rec.offset
    while len(env.fences) > MAX_FENCES:
        env.fences.pop(next(iter(env.fences)))
    env.profile, env.offset, env.session_id, env.partition = (
        profile, rec.offset, event.session_id, rec.partition,
    )  # fmt: skip
    env.recent = [*env.recent, id_hash(event.event_id)][-RECENT_IDS:]
    env.rate = bump_rate(env.rate, rate_time(rec, event))
    return env
