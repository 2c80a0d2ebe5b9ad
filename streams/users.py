"""Per-user state of one partition: profile envelopes in the Faust table, churn tracks in them.

The churn logic (``streams.churn``) keeps a :class:`~streams.churn.ChurnState` per partition:
a stream clock, a per-user :class:`~streams.churn.Track` and a heap of event-time timers.
Only the tracks are stored (inside each user's profile envelope, in the layout of
``streams.churn.track_to_list``, so they are written with the profile, fenced by the same
offset and restored with the table's changelog). The clock
and the timers are *derived*: :func:`rebuild` recomputes them from the tracks when a
partition is (re)assigned, so a restart continues exactly where the stored state stands.

>>> t = Track(anchor_ms=5, last_seen_ms=9, idle_armed=True, pending=[(5, [1.0])])
>>> state = rebuild({"u1": t}, ChurnConfig(idle_days=1.0))
>>> state.clock_ms, [(due - 9, kind, user) for due, kind, user, _ in state.timers if kind == IDLE]
(9, [(86400000, 2, 'u1')])
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from streams.churn import IDLE, LABEL, PROBE, ChurnConfig, ChurnState, Track
from streams.profile import DAY_MS


class TrackedUsers(dict[str, Track]):
    """The tracks of a partition; remembers which ones were looked at, to write them back."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.dirty: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            self.dirty.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Track:
        self.dirty.add(key)
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Track) -> None:
        self.dirty.add(key)
        super().__setitem__(key, value)

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty


def rebuild(tracks: dict[str, Track] | Iterable[tuple[str, Track]], cfg: ChurnConfig) -> ChurnState:
    """The partition's churn state from its stored tracks: clock and timers are derived."""
    users = TrackedUsers(tracks)
    timers: list[tuple[int, int, str, int]] = []
    clock = 0
    lateness = cfg.horizon_ms + cfg.allowed_lateness_ms
    for uid, t in users.items():
        clock = max(clock, t.last_seen_ms)
        timers.extend((ts + lateness, LABEL, uid, ts) for ts, _ in t.pending)
        if t.probe_armed and t.probe_k < len(cfg.probe_days):
            timers.append((t.anchor_ms + int(cfg.probe_days[t.probe_k] * DAY_MS), PROBE, uid, 0))
        if t.idle_armed:
            timers.append((t.last_seen_ms + int(cfg.idle_days * DAY_MS), IDLE, uid, 0))
    heapq.heapify(timers)
    users.dirty.clear()
    return ChurnState(clock_ms=clock, users=users, timers=timers)
