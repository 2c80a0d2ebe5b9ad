"""Step 6 of a batch: profiles, churn and segments of the batch's fresh events.

Everything a user's events change is written back in the user's envelope, to the table and
its changelog (naming the source partition), so it is fenced by the envelope's offset and
restored with the table.

An exception while applying one user's events (profile, churn, segment, track storage or
the envelope write) is confined to that user: the user is *broken* for this batch
(:attr:`UserUpdates.broken`), nothing of theirs is written or published, their events of
the batch go to the DLQ (``processing_error``), and the churn state of their partition is
rebuilt from the table, so memory never differs from what is stored. Other users go on.
Validation (:mod:`streams.core.events`) is meant to make this impossible; it is the net
under bugs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.core.events import Event, Record, safe_text
from streams.core.payloads import AlertOutcome, ChurnAlert, SegmentChange
from streams.domain import churn
from streams.domain.churn_state import TrackedUsers, track_to_list
from streams.domain.envelope import Envelope, applied
from streams.domain.outcomes import name_segment
from streams.domain.outputs import segment_change
from streams.domain.profile import Profile, update_profile
from streams.domain.recommendations import is_trigger
from streams.patches.tablestore import put
from streams.worker.context import ProfileTable
from streams.worker.partitions import LiveEnvelopes, Partitions

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UserUpdates:
    """The user state one batch reads and writes, and what it produced."""

    table: ProfileTable
    envelopes: dict[str, Envelope] = field(default_factory=dict)  # loaded or changed
    written: set[str] = field(default_factory=set)
    alerts: list[ChurnAlert] = field(default_factory=list)
    outcomes: list[AlertOutcome] = field(default_factory=list)  # alert windows that closed
    segments: list[SegmentChange] = field(default_factory=list)
    triggers: dict[str, Event] = field(default_factory=dict)  # last applied trigger per user
    #: users whose update failed in this batch -> why (their events go to the DLQ)
    broken: dict[str, str] = field(default_factory=dict)
    #: partitions whose churn state must be rebuilt from the table (a user update failed)
    rebuild: set[int] = field(default_factory=set)
    #: what :func:`write` writes: user -> (changelog partition, envelope bytes)
    serialised: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: users' anomaly state after this batch (stored in their envelopes)
    anomaly: dict[str, list[Any] | None] = field(default_factory=dict)
    #: decoded envelopes kept between batches (``Partitions.envelopes``): an entry is taken
    #: out when this batch loads the user (the batch may change it), and put back only with
    #: the bytes it serialises to, once they are in the table (:func:`serialise`, :func:`write`)
    live: LiveEnvelopes = field(default_factory=dict)
    #: at most this many live envelopes (``SHOPSTREAM_LIVE_ENVELOPES``; 0: none)
    live_max: int = 0

    def load(self, uid: str) -> Envelope | None:
        """The user's envelope: as changed in this batch, else as stored, else ``None``.

        The stored one is the live envelope if the table still holds the very bytes it was
        kept with, else decoded from the table's bytes."""
        env = self.envelopes.get(uid)
        if env is None:
            raw = self.table.get(uid)
            kept = self.live.pop(uid, None)
            if raw is None:
                return None
            if kept is not None and kept[0] is raw:
                env = self.envelopes[uid] = kept[1]
            else:
                env = self.envelopes[uid] = Envelope.from_bytes(raw)
        return env

    def lookup(self, uid: str) -> Profile | None:
        env = self.load(uid)
        return env.profile if env is not None else None

    def admit(
        self, valid: Sequence[tuple[Record, Event]]
    ) -> tuple[list[tuple[Record, Event]], list[tuple[Record, Event]]]:
        """Load every user of ``valid``; ``(events of readable users, events of users whose
        stored envelope cannot be read)`` (the latter are broken, never overwritten)."""
        for uid in {e.user_id for _, e in valid}:
            try:
                self.load(uid)
            except Exception as exc:  # noqa: BLE001 - one user's stored state
                self.fail(uid, "reading the stored profile", exc)
        if not self.broken:
            return list(valid), []
        return self.without_broken(valid), [(r, e) for r, e in valid if e.user_id in self.broken]

    def fail(self, uid: str, stage: str, exc: BaseException, partition: int = -1) -> None:
        """Mark ``uid`` broken for this batch (logged once per user)."""
        if uid in self.broken:
            return
        detail = safe_text(f"{stage} failed: {exc!r}")
        log.error("user %s: %s; their events of this batch go to the DLQ", safe_text(uid),
                  detail, exc_info=(type(exc), exc, exc.__traceback__))  # fmt: skip
        self.broken[uid] = detail
        self.envelopes.pop(uid, None)  # the stored one is read again, if anyone asks
        self.written.discard(uid)
        self.serialised.pop(uid, None)
        if partition >= 0:
            self.rebuild.add(partition)

    def without_broken(self, events: Sequence[tuple[Record, Event]]) -> list[tuple[Record, Event]]:
        return [(r, e) for r, e in events if e.user_id not in self.broken]


def update_users(
    parts: Partitions,
    fresh: Sequence[tuple[Record, Event]],
    learnable: Sequence[tuple[Record, Event]],
    out: UserUpdates,
    due: Sequence[Event],
) -> None:
    """Profiles, churn and segments of the ``fresh`` events (only ``learnable`` ones teach
    the churn model); the changed envelopes are written to the table. A user whose update
    raises is broken (:meth:`UserUpdates.fail`), the others are unaffected."""
    teach = {id(e) for _, e in learnable}
    touched: set[int] = set()
    cfg = parts.churn_cfg
    for rec, event in fresh:
        uid = event.user_id
        if uid in out.broken:
            continue
        try:
            env = out.load(uid)
            old = env.profile if env is not None else None
            models = parts.models_for(rec.partition)
            if id(event) in teach:
                state = parts.state_for(rec.partition)
                touched.add(rec.partition)
                if event.ts_ms > state.clock_ms:
                    # other users' timers first, so their alerts survive a failure of this
                    # user's own update (step then fires nothing more: the same result);
                    # whatever the heap's head (it may be a superseded timer, which a state
                    # rebuilt after a restart does not hold), so that the analytic fit is
                    # ticked at the same instants with or without a restart
                    alerts, _ = churn.advance(state, event.ts_ms - 1, out.lookup, models.churn,
                                              cfg)  # fmt: skip
                    out.alerts += alerts
                profile, alerts, _ = churn.step(state, old, event, models.churn, cfg, out.lookup)
                out.alerts += alerts
            else:  # a flagged bot: profile only, no churn labels or training
                profile = update_profile(old, event)
            models.seen(rec.topic, rec.partition, rec.offset, event.ts_ms)
            out.envelopes[uid] = applied(env, rec, event, profile)
        except Exception as exc:  # noqa: BLE001 - confined to this user
            out.fail(uid, f"applying {rec.topic}[{rec.partition}]@{rec.offset}", exc,
                     rec.partition)  # fmt: skip
            continue
        out.written.add(uid)
        if is_trigger(event):
            out.triggers[uid] = event
    for partition in sorted(touched):
        out.outcomes += parts.states[partition].take_outcomes()
    store_tracks(parts, touched, out)
    update_segments(parts, fresh, out)
    keep_triggers(out, due)
    serialise(out)
    drop_broken(parts, out)


def drop_broken(parts: Partitions, out: UserUpdates) -> None:
    """Nothing of a broken user is published; partitions where a user update failed get
    their churn state rebuilt from the table before their next use."""
    if not out.broken:
        return
    out.alerts = [a for a in out.alerts if a["user_id"] not in out.broken]
    out.outcomes = [o for o in out.outcomes if o["user_id"] not in out.broken]
    out.segments = [s for s in out.segments if s["user_id"] not in out.broken]
    out.triggers = {u: e for u, e in out.triggers.items() if u not in out.broken}
    for partition in out.rebuild:
        parts.states.pop(partition, None)


def store_tracks(parts: Partitions, partitions: set[int], out: UserUpdates) -> None:
    """Copy the churn tracks this batch looked at into their users' envelopes."""
    for partition in partitions:
        users = parts.states[partition].users
        assert isinstance(users, TrackedUsers)
        for uid in users.take_dirty():
            if uid in out.broken:
                continue
            try:
                env, track = out.load(uid), users.peek(uid)
                if env is not None and track is not None:
                    env.track = track_to_list(track)
                    out.written.add(uid)
            except Exception as exc:  # noqa: BLE001 - confined to this user
                out.fail(uid, "storing the churn track", exc, partition)


def update_segments(
    parts: Partitions, valid: Sequence[tuple[Record, Event]], out: UserUpdates
) -> None:
    """Segment of every user with events or an alert in this batch; changes are published."""
    last_ts = {e.user_id: e.ts_ms for _, e in valid}
    for alert in out.alerts:  # idle users move segment without events of their own
        last_ts.setdefault(alert["user_id"], alert["ts"])
    for uid, ts in last_ts.items():
        env = out.envelopes.get(uid)
        if env is None or uid in out.broken:
            continue
        try:
            upd = parts.models_for(env.partition).segments.update(
                env.profile, ts, previous=env.segment
            )
            if upd.changed:
                out.segments.append(segment_change(uid, upd, ts))
        except Exception as exc:  # noqa: BLE001 - confined to this user
            out.fail(uid, "updating the segment", exc, env.partition)
            continue
        if env.segment != upd.segment:
            env.segment = upd.segment
            out.written.add(uid)
    for alert in out.alerts:
        uid = alert["user_id"]
        env = out.envelopes.get(uid)
        alert["segment"] = env.segment if env and env.segment else alert["segment"]
        state = parts.states.get(env.partition) if env is not None else None
        track = dict.get(state.users, uid) if state is not None else None  # (not dirty)
        if env is not None and track is not None and uid not in out.broken:
            # the alert's outcome window (in the track, stored already) gets its segment
            if name_segment(track.watched, alert["alert_id"], alert["segment"]):
                env.track = track_to_list(track)
                out.written.add(uid)


def keep_triggers(out: UserUpdates, due: Sequence[Event]) -> None:
    """``out.triggers`` keeps the ``due`` events that were applied (an event whose update
    failed went to the DLQ instead): the envelope remembers when they were published."""
    out.triggers = {
        e.user_id: e for e in due
        if out.triggers.get(e.user_id) is e and e.user_id not in out.broken
    }  # fmt: skip
    for event in out.triggers.values():
        out.envelopes[event.user_id].last_rec_ms = event.ts_ms


def serialise(out: UserUpdates) -> None:
    """The bytes of every changed envelope, made before any output of the batch is sent (a
    user whose envelope cannot be serialised is broken like any other failure). An
    envelope that serialises to the bytes the table holds is not written again (a churn
    track read but not changed): it is live again at once."""
    table = out.table
    for uid in list(out.written):
        env = out.envelopes[uid]
        if uid in out.anomaly:
            env.anomaly = out.anomaly[uid]
        try:
            raw = env.to_bytes()
        except Exception as exc:  # noqa: BLE001 - confined to this user
            out.fail(uid, "writing the profile", exc, env.partition)
            continue
        stored = table.get(uid)
        if raw == stored:
            out.written.discard(uid)
            if out.live_max:
                out.live[uid] = (stored, env)
        else:
            out.serialised[uid] = (env.partition, raw)


async def write(out: UserUpdates, batched: bool = True, parts: Partitions | None = None) -> None:
    """Write the changed envelopes to the table and its changelog, naming the changelog
    partition (the source partition): ``batched``, one producer batch per partition
    (``SHOPSTREAM_BATCH_PRODUCE``), else one ``send_changelog`` each. Called once the batch's
    outputs were delivered: the envelope is the fence, so a crash before it re-derives the
    outputs, never loses them. Faust flushes the changelog before it commits offsets. The
    ``parts``' undo hashes first keep the users' envelopes as they were when their
    partition's models were stored (streams.worker.undo)."""
    table = out.table
    records = [(p, uid, v) for uid, (p, v) in out.serialised.items() if uid not in out.broken]
    if parts is not None:
        wants = parts.undo.wants
        await parts.keep_before([(uid, p, table.get(uid)) for p, uid, _ in records
                                 if wants(p, uid)])  # fmt: skip
    if batched:
        await table.send_changelog_batch(records)
    else:
        for partition, uid, value in records:
            table.send_changelog(partition, uid, value)
    live, envelopes = out.live, out.envelopes
    for partition, uid, value in records:
        put(table.data, partition, uid, value)  # any table store (patches/tablestore.py)
        if out.live_max:
            live[uid] = (value, envelopes[uid])
    while len(live) > out.live_max:  # the least recently used first
        del live[next(iter(live))]
