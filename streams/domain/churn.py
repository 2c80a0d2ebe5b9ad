"""Per-partition churn logic in event time: delayed labels, idle alerts, a stream clock.

One :class:`ChurnState` per partition holds the stream clock (the largest event time seen),
per-user bookkeeping and a heap of event-time timers, so the work per event follows the
number of *due* users, never all users. Timers are lazy: each user has at most one probe
and one idle timer in the heap; a timer that fires after the user moved on re-arms itself.

* **Labels** -- a snapshot of the features is taken at activity (at most one a day) and
  weekly while the user stays silent (probes at 7, 14, ..., 119 days), so the labelled
  examples cover every recency the model is later asked about. A snapshot resolves
  *negative* when the user purchases (``label_mode="purchase"``) or does anything
  (``"activity"``) within H days after it, *positive* when the clock passes
  ``ts + H + allowed_lateness`` first. Late events inside that slack still count.
* **Alerts** -- when a user has been idle ``idle_days`` (event time) the model scores them
  once for that idle episode; at or above the threshold an alert
  (:class:`streams.core.payloads.ChurnAlert`) is emitted whose ``alert_id`` hashes user +
  episode start, so a replay yields the same ids. A probability the model cannot compute
  (``nan``) raises no alert.

The agent, per event (``state`` is updated in place and is JSON-safe via ``to_dict``)::

    profile, alerts, labelled = step(state, table.get(uid), event, model, config, table.get)
    table[uid] = profile       # alerts -> shop.churn-alerts; labels were learned already

>>> from models.churn import ChurnModel
>>> from streams.core.settings import Settings
>>> from streams.domain.alerts import alert_id
>>> day, t0 = 86_400_000, 1_704_067_200_000
>>> cfg = ChurnConfig.from_settings(Settings(), min_labels_for_alerts=0)
>>> state, profiles = ChurnState(), {}
>>> model = ChurnModel()  # untrained: P = 0.5, at the threshold
>>> ev = Event("e1", "purchase", "u1", "s1", t0, item_id="i1", price=10.0)
>>> profiles["u1"], alerts, labelled = step(state, None, ev, model, cfg, profiles.get)
>>> alerts, labelled = advance(state, t0 + 45 * day, profiles.get, model, cfg)
>>> [(round(x["recency_days"]), y) for x, y in labelled]
[(0, True), (7, True), (14, True)]
>>> [a["alert_id"] == alert_id("u1", t0) for a in alerts]
[True]
>>> ChurnState.from_dict(state.to_dict()).to_dict() == state.to_dict()
True

State and configuration live in :mod:`streams.domain.churn_state`; the alert payload in
:mod:`streams.domain.alerts`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Protocol

from streams.core.events import Event
from streams.core.payloads import ChurnAlert
from streams.domain.alerts import build_alert
from streams.domain.churn_state import IDLE, LABEL, PROBE, ChurnConfig, ChurnState, Track
from streams.domain.profile import DAY_MS, FEATURE_NAMES, Profile, features, update_profile

Labelled = tuple[dict[str, float], bool]
Lookup = Callable[[str], Profile | None]


class Scorer(Protocol):
    """What the churn logic needs from a model (``models.churn.ChurnModel`` has it)."""

    @property
    def model_version(self) -> str: ...
    @property
    def n_learned(self) -> int: ...
    def predict_proba_one(self, x: dict[str, float]) -> float: ...
    def learn_one(self, x: dict[str, float], y: bool) -> None: ...
    def contributions(self, x: dict[str, float]) -> dict[str, float]: ...


def _vector(p: Profile, now_ms: int) -> list[float]:
    f = features(p, now_ms)
    return [f[k] for k in FEATURE_NAMES]


def _learn(model: Scorer | None, out: list[Labelled], x: list[float], y: bool) -> None:
    xd = dict(zip(FEATURE_NAMES, x, strict=True))
    out.append((xd, y))
    if model is not None:
        model.learn_one(xd, y)


def _snapshot(state: ChurnState, uid: str, t: Track, p: Profile, ts: int, cfg: ChurnConfig) -> None:
    # rounded once here, so the stored track (an envelope's ``track``) is exactly the live one
    t.pending.append((ts, [round(v, 6) for v in _vector(p, ts)]))
    t.last_snapshot_ms = max(t.last_snapshot_ms, ts)
    heapq.heappush(state.timers, (ts + cfg.horizon_ms + cfg.allowed_lateness_ms, LABEL, uid, ts))


def _fire(
    state: ChurnState,
    until_ms: int,
    lookup: Lookup,
    model: Scorer | None,
    cfg: ChurnConfig,
    alerts: list[ChurnAlert],
    labelled: list[Labelled],
) -> None:
    """Fire every timer due at or before ``until_ms``, in (due, kind, user) order."""
    timers, probes = state.timers, cfg.probe_days
    while timers and timers[0][0] <= until_ms:
        due, kind, uid, ref = heapq.heappop(timers)
        t = state.users.get(uid)
        if t is None:
            continue
        if kind == LABEL:
            for i, (ts, x) in enumerate(t.pending):
                if ts == ref:
                    del t.pending[i]
                    _learn(model, labelled, x, True)
                    break
        elif kind == PROBE:
            if t.probe_k >= len(probes):
                t.probe_armed = False
                continue
            expected = t.anchor_ms + int(probes[t.probe_k] * DAY_MS)
            if expected > due:  # the user was active since: re-arm from the new anchor
                heapq.heappush(timers, (expected, PROBE, uid, 0))
                continue
            p = lookup(uid)
            if p is not None:
                _snapshot(state, uid, t, p, due, cfg)
            t.probe_k += 1
            if t.probe_k < len(probes):
                nxt = t.anchor_ms + int(probes[t.probe_k] * DAY_MS)
                heapq.heappush(timers, (nxt, PROBE, uid, 0))
            else:
                t.probe_armed = False
        else:  # IDLE
            expected = t.last_seen_ms + int(cfg.idle_days * DAY_MS)
            if expected > due:
                heapq.heappush(timers, (expected, IDLE, uid, 0))
                continue
            t.idle_armed = False
            if t.scored_episode_ms == t.last_seen_ms or model is None:
                continue
            if model.n_learned < cfg.min_labels_for_alerts:
                continue
            p = lookup(uid)
            if p is None or (p.n_orders == 0 and not cfg.alert_non_buyers):
                continue
            t.scored_episode_ms = t.last_seen_ms
            xf = features(p, due)
            prob = model.predict_proba_one(xf)
            if math.isfinite(prob) and prob >= cfg.threshold:  # nan: cannot say, no alert
                alerts.append(
                    build_alert(
                        uid, p, xf, prob, episode_start_ms=t.last_seen_ms, now_ms=due,
                        contributions=model.contributions(xf), model_version=model.model_version,
                        policy=cfg.alert_policy,
                    )
                )


def advance(
    state: ChurnState, now_ms: int, lookup: Lookup, model: Scorer | None, cfg: ChurnConfig
) -> tuple[list[ChurnAlert], list[Labelled]]:
    """Move the partition's clock to ``now_ms`` (never backwards) and fire due timers.

    Resolved labels are learned by ``model`` (if given) in a deterministic order and also
    returned. Call it on idle partitions too (e.g. with the max event time of the topic)
    so idle users are noticed without new events of their own.
    """
    alerts: list[ChurnAlert] = []
    labelled: list[Labelled] = []
    _fire(state, now_ms, lookup, model, cfg, alerts, labelled)
    state.clock_ms = max(state.clock_ms, now_ms)
    return alerts, labelled


def step(
    state: ChurnState,
    profile: Profile | None,
    event: Event,
    model: Scorer | None,
    cfg: ChurnConfig,
    lookup: Lookup,
) -> tuple[Profile, list[ChurnAlert], list[Labelled]]:
    """Process one event: fire timers due strictly before it, update the profile, record
    the activity. ``profile`` is the user's stored profile (``None`` for a new user);
    ``lookup`` returns stored profiles of other users whose timers fire. Returns the
    updated profile (store it), alerts to publish and labels resolved (already learned).
    """
    alerts: list[ChurnAlert] = []
    labelled: list[Labelled] = []
    ts, uid = event.ts_ms, event.user_id
    if ts > state.clock_ms:
        _fire(state, ts - 1, lookup, model, cfg, alerts, labelled)
        state.clock_ms = ts
    p = update_profile(profile, event)
    t = state.users.get(uid)
    new = t is None
    if t is None:
        t = state.users[uid] = Track(anchor_ms=ts, last_seen_ms=ts)
    is_activity = cfg.label_mode == "activity" or event.type == "purchase"
    horizon = cfg.horizon_ms
    if is_activity and t.pending:  # resolve snapshots whose window contains this activity
        keep: list[tuple[int, list[float]]] = []
        for snap_ts, x in t.pending:
            if snap_ts < ts <= snap_ts + horizon:
                _learn(model, labelled, x, False)
            elif ts > snap_ts + horizon:
                _learn(model, labelled, x, True)
            else:
                keep.append((snap_ts, x))
        t.pending = keep
    if ts > t.last_seen_ms:
        t.last_seen_ms = ts
    if cfg.alerts and not t.idle_armed:
        heapq.heappush(state.timers, (t.last_seen_ms + int(cfg.idle_days * DAY_MS), IDLE, uid, 0))
        t.idle_armed = True
    if new or (is_activity and ts > t.anchor_ms):
        t.anchor_ms = ts
        t.probe_k = 1
        if t.last_snapshot_ms < 0 or ts - t.last_snapshot_ms >= cfg.min_snapshot_gap_ms:
            _snapshot(state, uid, t, p, ts, cfg)
        if not t.probe_armed and len(cfg.probe_days) > 1:
            heapq.heappush(state.timers, (ts + int(cfg.probe_days[1] * DAY_MS), PROBE, uid, 0))
            t.probe_armed = True
    return p, alerts, labelled
