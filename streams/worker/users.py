"""Step 6 of a batch: profiles, churn and segments of the batch's fresh events.

Everything a user's events change is written back in the user's envelope, to the table and
its changelog (naming the source partition), so it is fenced by the envelope's offset and
restored with the table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.core.events import Event, Record
from streams.core.payloads import ChurnAlert, SegmentChange
from streams.domain import churn
from streams.domain.churn_state import TrackedUsers, track_to_list
from streams.domain.envelope import Envelope, applied
from streams.domain.outputs import segment_change
from streams.domain.profile import Profile, update_profile
from streams.domain.recommendations import is_trigger
from streams.patches.tablestore import put
from streams.worker.context import ProfileTable
from streams.worker.partitions import Partitions

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UserUpdates:
    """The user state one batch reads and writes, and what it produced."""

    table: ProfileTable
    envelopes: dict[str, Envelope] = field(default_factory=dict)  # loaded or changed
    written: set[str] = field(default_factory=set)
    alerts: list[ChurnAlert] = field(default_factory=list)
    segments: list[SegmentChange] = field(default_factory=list)
    triggers: dict[str, Event] = field(default_factory=dict)  # last applied trigger per user
    failed: list[tuple[Record, str]] = field(default_factory=list)

    def load(self, uid: str) -> Envelope | None:
        """The user's envelope: as changed in this batch, else as stored, else ``None``."""
        env = self.envelopes.get(uid)
        if env is None:
            raw = self.table.get(uid)
            if raw is None:
                return None
            env = self.envelopes[uid] = Envelope.from_bytes(raw)
        return env

    def lookup(self, uid: str) -> Profile | None:
        env = self.load(uid)
        return env.profile if env is not None else None


def update_users(
    parts: Partitions,
    fresh: Sequence[tuple[Record, Event]],
    learnable: Sequence[tuple[Record, Event]],
    out: UserUpdates,
    due: Sequence[Event],
) -> None:
    """Profiles, churn and segments of the ``fresh`` events (only ``learnable`` ones teach
    the churn model); the changed envelopes are written to the table."""
    teach = {id(e) for _, e in learnable}
    touched: set[int] = set()
    for rec, event in fresh:
        env = out.load(event.user_id)
        old = env.profile if env is not None else None
        models = parts.models_for(rec.partition)
        try:
            if id(event) in teach:
                state = parts.state_for(rec.partition)
                touched.add(rec.partition)
                profile, alerts, _ = churn.step(
                    state, old, event, models.churn, parts.churn_cfg, out.lookup
                )
                out.alerts += alerts
            else:  # a flagged bot: profile only, no churn labels or training
                profile = update_profile(old, event)
        except Exception as exc:
            log.exception("user update failed at %s[%d]@%d", rec.topic, rec.partition, rec.offset)
            out.failed.append((rec, repr(exc)))
            continue
        models.seen(rec.topic, rec.partition, rec.offset, event.ts_ms)
        out.envelopes[event.user_id] = applied(env, rec, event, profile)
        out.written.add(event.user_id)
        if is_trigger(event):
            out.triggers[event.user_id] = event
    store_tracks(parts, touched, out)
    update_segments(parts, fresh, out)
    write(out, due)


def store_tracks(parts: Partitions, partitions: set[int], out: UserUpdates) -> None:
    """Copy the churn tracks this batch looked at into their users' envelopes."""
    for partition in partitions:
        users = parts.states[partition].users
        assert isinstance(users, TrackedUsers)
        for uid in users.take_dirty():
            env, track = out.load(uid), users.peek(uid)
            if env is not None and track is not None:
                env.track = track_to_list(track)
                out.written.add(uid)


def update_segments(
    parts: Partitions, valid: Sequence[tuple[Record, Event]], out: UserUpdates
) -> None:
    """Segment of every user with events or an alert in this batch; changes are published."""
    last_ts = {e.user_id: e.ts_ms for _, e in valid}
    for alert in out.alerts:  # idle users move segment without events of their own
        last_ts.setdefault(alert["user_id"], alert["ts"])
    for uid, ts in last_ts.items():
        env = out.envelopes.get(uid)
        if env is None:
            continue
        upd = parts.models_for(env.partition).segments.update(
            env.profile, ts, previous=env.segment
        )
        if upd.changed:
            out.segments.append(segment_change(uid, upd, ts))
        if env.segment != upd.segment:
            env.segment = upd.segment
            out.written.add(uid)
    for alert in out.alerts:
        env = out.envelopes.get(alert["user_id"])
        alert["segment"] = env.segment if env and env.segment else alert["segment"]


def write(out: UserUpdates, due: Sequence[Event]) -> None:
    """Write changed envelopes, naming the changelog partition (the source partition).

    ``out.triggers`` keeps the ``due`` events that were applied (an event whose update
    failed went to the DLQ instead): the envelope remembers when they were published.
    """
    out.triggers = {e.user_id: e for e in due if out.triggers.get(e.user_id) is e}
    for event in out.triggers.values():
        out.envelopes[event.user_id].last_rec_ms = event.ts_ms
    table = out.table
    for uid in out.written:
        env = out.envelopes[uid]
        value = env.to_bytes()
        put(table.data, env.partition, uid, value)  # any table store (patches/tablestore.py)
        table.send_changelog(env.partition, uid, value)
