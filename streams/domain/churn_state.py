"""Churn bookkeeping of one partition: configuration, per-user tracks, the state they form.

:mod:`streams.domain.churn` keeps a :class:`ChurnState` per partition: a stream clock, a
per-user :class:`Track` and a heap of event-time timers. Only the tracks are stored (inside
each user's profile envelope, in the layout of :func:`track_to_list`, so they are written
with the profile, fenced by the same offset and restored with the table's changelog). The
clock and the timers are *derived*: :func:`rebuild` recomputes them from the tracks when a
partition is (re)assigned, so a restart continues exactly where the stored state stands.

>>> from streams.core.settings import Settings
>>> t = Track(anchor_ms=5, last_seen_ms=9, idle_due_ms=ARMED, pending=[(5, [1.0], None, False)])
>>> state = rebuild({"u1": t}, ChurnConfig.from_settings(Settings(), idle_days=1.0))
>>> state.clock_ms, [(due - 9, kind, user) for due, kind, user, _ in state.timers if kind == IDLE]
(9, [(86400000, 2, 'u1')])
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.core.payloads import AlertOutcome
from streams.core.settings import Settings
from streams.domain.alerts import DEFAULT_TIERS, AlertPolicy, Tier, tiers
from streams.domain.outcomes import Watched, watched_from_list, watched_to_list
from streams.domain.profile import DAY_MS

#: Timer kinds, in the order they fire at the same instant.
LABEL, PROBE, IDLE, OUTCOME = 0, 1, 2, 3
STATE_VERSION = 2
#: ``Track.idle_due_ms`` of a track whose idle timer is armed for its episode's first check,
#: ``Track.probe_due_ms`` of one whose probe timer is armed for its next probe (tracks of
#: older layouts stored only a flag): :func:`rebuild` places the timer.
ARMED = -2

#: A pending snapshot: (event time, feature vector, the analytic summary and annual-return
#: signal ``[x, t_x, T, season]`` (``[x, t_x, T]`` in tracks stored before the signal) or
#: ``None`` for a customer who never bought, whether a purchase inside its window was seen).
Pending = tuple[int, list[float], list[float] | None, bool]


def geometric_probes(
    first: float = 7.0, ratio: float = 2.0, max_days: float = 3650.0
) -> tuple[float, ...]:
    """Probe offsets in days after the last activity: 0, then ``first * ratio**k``.

    Any silence up to ``max_days`` is labelled with O(log silence) snapshots.

    >>> geometric_probes(max_days=300)
    (0.0, 7.0, 14.0, 28.0, 56.0, 112.0, 224.0)
    """
    out, d = [0.0], float(first)
    while d <= max_days:
        out.append(round(d, 6))
        d *= ratio
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChurnConfig:
    """What the churn logic needs to know. The first three come from :class:`Settings`
    (:meth:`from_settings`), which holds their one default. (What the scorers need -- the
    guard's rule, the analytic fit -- is their configuration: ``streams.worker.configs``.)"""

    horizon_days: float
    idle_days: float
    threshold: float
    label_mode: Literal["purchase", "activity"] = "purchase"
    #: a snapshot at each activity, then probes while the customer stays silent, out to ten
    #: years: the labels cover every silence the model is asked about
    probe_days: tuple[float, ...] = geometric_probes()
    #: activity snapshots at least this far apart, and at least H/30 (pending snapshots of a
    #: daily buyer stay ~30 however long the horizon: bounded state per user)
    min_snapshot_gap_ms: int = DAY_MS
    #: an idle episode is scored at idle_days x 1, 2, 4, ... (this many checks) until one
    #: alert; a customer below the threshold at first may cross it later in the silence
    idle_checks: int = 6
    allowed_lateness_ms: int = 3_600_000
    alerts: bool = True
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    top_reasons: int = 3
    segment: str = "unassigned"
    alert_non_buyers: bool = False  # score visitors who never bought too
    holdout_share: float = Settings().alert_holdout_share

    @classmethod
    def from_settings(cls, s: Settings, **overrides: Any) -> ChurnConfig:
        values: dict[str, Any] = {
            "horizon_days": s.churn_horizon_days,
            "idle_days": s.churn_idle_days,
            "threshold": s.churn_threshold,
            "tiers": tiers(s.coupon_tiers),
            "holdout_share": s.alert_holdout_share,
        }
        return cls(**{**values, **overrides})

    #: ``horizon_days`` and the snapshot gap in ms, worked out once (read per event)
    horizon_ms: int = field(init=False, repr=False, compare=False)
    snapshot_gap_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        horizon_ms = int(self.horizon_days * DAY_MS)
        object.__setattr__(self, "horizon_ms", horizon_ms)
        object.__setattr__(self, "snapshot_gap_ms", max(self.min_snapshot_gap_ms, horizon_ms // 30))

    @property
    def alert_policy(self) -> AlertPolicy:
        return AlertPolicy(
            threshold=self.threshold, tiers=self.tiers, top_reasons=self.top_reasons,
            segment=self.segment, holdout_share=self.holdout_share,
        )  # fmt: skip


@dataclass(slots=True)
class Track:
    """Per-user churn bookkeeping (small; JSON as a list)."""

    anchor_ms: int  # last label-relevant activity (last purchase, or first seen if none)
    last_seen_ms: int
    probe_k: int = 1  # index into probe_days of the next probe
    probe_due_ms: int = -1  # the due of the user's live probe timer (-1: none)
    idle_due_ms: int = -1  # the due of the user's live idle timer (-1: none)
    scored_episode_ms: int = -1  # idle episode (its start) done with: alerted, or checks over
    last_snapshot_ms: int = -1
    pending: list[Pending] = field(default_factory=list)
    #: alerts whose outcome window is open (:mod:`streams.domain.outcomes`)
    watched: list[Watched] = field(default_factory=list)


def track_to_list(t: Track) -> list[Any]:
    """Compact JSON form of a track: what profile envelopes and ``ChurnState.to_dict`` store.

    Pending vectors are rounded when they are taken, so this is exact.

    >>> pending = [(5, [1.0], [0, 0.0, 1.5], True)]
    >>> t = Track(anchor_ms=5, last_seen_ms=9, idle_due_ms=14, pending=pending)
    >>> track_to_list(t)
    [5, 9, 1, False, 14, -1, -1, [[5, [1.0], [0, 0.0, 1.5], 1]]]
    >>> track_from_list(track_to_list(t)) == t
    True

    The probe's due is written as the layout before it wrote its flag when there is no probe
    (``false``; ``true`` for :data:`ARMED`): a worker of the release before reads a due as
    "armed", and "no probe" as no probe, so partitions can move between the two releases
    during a rolling update or a rollback (docs/operations.md) without losing probes.

    >>> [track_to_list(Track(1, 2, probe_due_ms=d))[3] for d in (-1, ARMED, 7)]
    [False, True, 7]
    """
    pending = [[ts, x, s, int(neg)] for ts, x, s, neg in t.pending]
    due = t.probe_due_ms
    probe: int | bool = due if due >= 0 else due == ARMED
    out = [
        t.anchor_ms, t.last_seen_ms, t.probe_k, probe, t.idle_due_ms,
        t.scored_episode_ms, t.last_snapshot_ms, pending,
    ]  # fmt: skip
    if t.watched:  # only then: a track without open alert windows keeps its older layout
        out.append([watched_to_list(w) for w in t.watched])
    return out


def track_from_list(v: list[Any]) -> Track:
    """Inverse of :func:`track_to_list`.

    A track stored by the layout before geometric probes (pending ``[ts, x]``, older
    features, an idle flag) loses its pending snapshots, at most H days of labels, and
    restarts its probes from the last activity; an armed idle or probe flag (layouts before
    the timers' dues were stored) becomes :data:`ARMED`.

    >>> t = track_from_list([5, 9, 4, True, True, -1, 5, [[5, [1.0]]]])
    >>> t.probe_k, t.pending, t.probe_due_ms == t.idle_due_ms == ARMED
    (1, [], True)
    """
    a, s, k, pa, idle, ep, snap, pend = v[:8]
    watched = [watched_from_list(w) for w in v[8]] if len(v) > 8 else []
    if isinstance(idle, bool):  # the older layouts' flags
        idle = ARMED if idle else -1
    if isinstance(pa, bool):
        pa = ARMED if pa else -1
    if any(len(p) != 4 for p in pend):  # probes restart: from the anchor, placed by rebuild
        return Track(a, s, 1, -1 if pa == -1 else ARMED, idle, ep, snap, [], watched)
    pending: list[Pending] = [
        (int(ts), list(x), None if sm is None else list(sm), bool(neg)) for ts, x, sm, neg in pend
    ]
    return Track(a, s, k, pa, idle, ep, snap, pending, watched)


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

    def peek(self, key: str) -> Track | None:
        """The track without marking it dirty (for reading what is to be written)."""
        return dict.get(self, key)


@dataclass(slots=True)
class ChurnState:
    """One partition's churn state: stream clock, tracks, timers ``(due, kind, user, ref)``."""

    clock_ms: int = 0
    users: dict[str, Track] = field(default_factory=dict)
    timers: list[tuple[int, int, str, int]] = field(default_factory=list)
    #: outcomes resolved by the timers since the caller last took them (not stored: the
    #: worker publishes them with the batch that resolved them)
    outcomes: list[AlertOutcome] = field(default_factory=list)

    def take_outcomes(self) -> list[AlertOutcome]:
        out, self.outcomes = self.outcomes, []
        return out

    def to_dict(self) -> dict[str, Any]:
        users = {u: track_to_list(t) for u, t in self.users.items()}
        return {
            "v": STATE_VERSION,
            "clock": self.clock_ms,
            "users": users,
            "timers": [list(t) for t in self.timers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChurnState:
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"churn state version {d.get('v')!r} is not {STATE_VERSION}")
        users = {u: track_from_list(v) for u, v in d["users"].items()}
        timers = [(int(a), int(b), str(c), int(e)) for a, b, c, e in d["timers"]]
        heapq.heapify(timers)
        return cls(int(d["clock"]), users, timers)


def rebuild(tracks: dict[str, Track] | Iterable[tuple[str, Track]], cfg: ChurnConfig) -> ChurnState:
    """The partition's churn state from its stored tracks: clock and timers are derived."""
    users = TrackedUsers(tracks)
    timers: list[tuple[int, int, str, int]] = []
    clock = 0
    lateness = cfg.horizon_ms + cfg.allowed_lateness_ms
    for uid, t in users.items():
        clock = max(clock, t.last_seen_ms)
        timers.extend((ts + lateness, LABEL, uid, ts) for ts, *_ in t.pending)
        timers.extend((w.ts_ms + lateness, OUTCOME, uid, w.ts_ms) for w in t.watched)
        if t.probe_due_ms == ARMED:  # an older layout's flag: the next probe from the anchor
            t.probe_due_ms = -1
            if t.probe_k < len(cfg.probe_days):
                t.probe_due_ms = t.anchor_ms + int(cfg.probe_days[t.probe_k] * DAY_MS)
        if t.probe_due_ms >= 0:
            timers.append((t.probe_due_ms, PROBE, uid, 0))
        if t.idle_due_ms == ARMED:
            t.idle_due_ms = t.last_seen_ms + int(cfg.idle_days * DAY_MS)
        if t.idle_due_ms >= 0:
            timers.append((t.idle_due_ms, IDLE, uid, 0))
    heapq.heapify(timers)
    users.dirty.clear()
    return ChurnState(clock_ms=clock, users=users, timers=timers)
