"""Per-partition churn logic in event time: delayed labels, a guarded scorer, idle alerts.

One :class:`ChurnState` per partition holds the stream clock (the largest event time seen),
per-user bookkeeping and a heap of event-time timers, so the work per event follows the
number of *due* users, never all users. Timers are lazy: each user has one live probe and
one live idle timer, whose dues the track holds; one that comes due after the user moved on
re-arms itself, one armed later than what the user's return calls for (their next check,
their first probe) is superseded by a new one and dropped when it comes due. So a probe or
a check comes when it is due, and the timers :func:`~streams.domain.churn_state.rebuild`
derives from the tracks after a restart are the live ones.

* **Labels** -- the features are snapshotted at activity (at most one a day) and, while the
  customer stays silent, at geometric probes (7, 14, 28, ... days), so the labels cover every
  silence the model is later asked about. A snapshot is *negative* if the customer purchases
  (``label_mode="purchase"``) or does anything (``"activity"``) within H days after it,
  *positive* otherwise; either way it is learned when its window closes (``ts + H +
  allowed_lateness``), so the model sees its labels in snapshot order, with no class mix
  that depends on how long ago they were taken. Late events inside that slack still count.
* **Scorers** -- the partition's :class:`~models.guarded.GuardedChurn` (the
  :class:`Scorer` here): an analytic MBG/NBD scorer whose population fit follows the
  clock, a learned model, and the guard that scores both on each resolved label before the
  model learns it. The learned model's inputs are the bounded profile features plus the
  analytic score (``bg_logit``, ``bg_p``).
* **Alerts** -- when a customer has been idle ``idle_days`` (event time) the current champion
  scores them (:func:`alert_score`, which ``evaluate churn`` calls too), and again at 2, 4,
  8, ... times that silence while they stay below the threshold (``idle_checks`` checks); at
  or above it one alert (:class:`streams.core.payloads.ChurnAlert`) for the idle episode
  names the champion in ``model_version``; its ``alert_id`` hashes user + episode start, so
  a replay yields the same ids. A probability that cannot be computed raises no alert.

The agent, per event (``state`` is updated in place and is JSON-safe via ``to_dict``)::

    profile, alerts, labelled = step(state, table.get(uid), event, scorer, config, table.get)

>>> from models.guard import GuardConfig
>>> from models.guarded import GuardedChurn
>>> from streams.core.settings import Settings
>>> from streams.domain.alerts import alert_id
>>> day, t0 = 86_400_000, 1_704_067_200_000
>>> cfg = ChurnConfig.from_settings(Settings())
>>> scorer = GuardedChurn.new(horizon_days=30.0, kind="logistic", min_customers=1,
...     guard=GuardConfig(mode="auto", threshold=0.5, half_life_days=90.0, min_labels=500,
...                       min_class=50, margin=0.01, z=2.0, decide_every=50))
>>> state, profiles = ChurnState(), {}
>>> ev = Event("e1", "purchase", "u1", "s1", t0, item_id="i1", price=10.0)
>>> profiles["u1"], alerts, labelled = step(state, None, ev, scorer, cfg, profiles.get)
>>> alerts, labelled = advance(state, t0 + 60 * day, profiles.get, scorer, cfg)
>>> [(round(x["log_recency"], 2), y) for x, y in labelled]    # snapshot, probes at 7, 14, 28
[(0.0, True), (2.08, True), (2.71, True), (3.37, True)]
>>> [(a["alert_id"] == alert_id("u1", t0), a["model_version"]) for a in alerts]
[(True, 'churn-mbgnbd-v1')]
>>> ChurnState.from_dict(state.to_dict()).to_dict() == state.to_dict()
True

State and configuration live in :mod:`streams.domain.churn_state`; the alert payload in
:mod:`streams.domain.alerts`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from models.alive import Summary, summary
from streams.core.events import Event
from streams.core.payloads import ChurnAlert
from streams.domain.alerts import build_alert
from streams.domain.churn_state import (
    IDLE,
    LABEL,
    OUTCOME,
    PROBE,
    ChurnConfig,
    ChurnState,
    Pending,
    Track,
)
from streams.domain.outcomes import count_purchase, outcome, watch
from streams.domain.profile import (
    DAY_MS,
    FEATURE_NAMES,
    Profile,
    features,
    season_return,
    update_profile,
)

Labelled = tuple[dict[str, float], bool]
Lookup = Callable[[str], Profile | None]
#: The learned model's inputs: the profile's features and the analytic scorer's.
MODEL_FEATURES: Final = (*FEATURE_NAMES, "bg_logit", "bg_p")


class Scorer(Protocol):
    """What the churn logic needs from a partition's scorers (``models.guarded.GuardedChurn``)."""

    @property
    def can_alert(self) -> bool: ...
    @property
    def horizon_days(self) -> float: ...
    def observe(
        self, uid: str, first_purchase_ms: int, last_purchase_ms: int, n_orders: int
    ) -> None: ...
    def tick(self, now_ms: int) -> None: ...
    def analytic(self, s: Summary | None) -> float: ...
    def learn(
        self, x: dict[str, float], s: Summary | None, y: bool, now_ms: int, season: float
    ) -> None: ...
    def score(
        self, x: dict[str, float], s: Summary | None, season: float
    ) -> tuple[float, str, dict[str, float]]: ...


def summary_of(p: Profile, now_ms: int) -> Summary | None:
    """The analytic scorer's ``(x, t_x, T)`` of a profile; ``None`` if it never bought."""
    if p.n_orders <= 0:
        return None
    return summary(p.first_purchase_ms, p.last_purchase_ms, p.n_orders, now_ms)


def model_features(
    scorer: Scorer, p: Profile, now_ms: int
) -> tuple[dict[str, float], dict[str, float], Summary | None]:
    """``(model inputs, all profile features, analytic summary)`` of ``p`` at ``now_ms``."""
    f = features(p, now_ms)
    s = summary_of(p, now_ms)
    x = {k: f[k] for k in FEATURE_NAMES}
    a = scorer.analytic(s)
    a = min(max(a, 1e-6), 1.0 - 1e-6) if math.isfinite(a) else 0.5
    x["bg_logit"] = math.log(a / (1.0 - a))
    x["bg_p"] = a
    return x, f, s


def alert_score(
    scorer: Scorer, p: Profile, now_ms: int
) -> tuple[float, str, dict[str, float], dict[str, float]]:
    """What an alert would say of ``p`` at ``now_ms``: ``(P(churn), the champion's version,
    profile features, reasons)``. The idle timers and ``evaluate churn`` both call it."""
    x, f, s = model_features(scorer, p, now_ms)
    prob, version, reasons = scorer.score(x, s, season_return(p, now_ms, scorer.horizon_days))
    return prob, version, f, reasons


def _learn(
    state: ChurnState, scorer: Scorer | None, out: list[Labelled], pend: Pending, y: bool
) -> None:
    _, x, sm, _ = pend
    if len(x) != len(MODEL_FEATURES):  # taken before the feature list changed: not learned
        return
    xd = dict(zip(MODEL_FEATURES, x, strict=True))
    out.append((xd, y))
    if scorer is not None:
        s = None if sm is None else (int(sm[0]), sm[1], sm[2])
        season = sm[3] if sm is not None and len(sm) > 3 else 0.0  # older tracks: none
        scorer.learn(xd, s, y, state.clock_ms, season)


def _snapshot(
    state: ChurnState, uid: str, t: Track, p: Profile, ts: int, cfg: ChurnConfig,
    scorer: Scorer | None,
) -> None:  # fmt: skip
    if scorer is None:  # labels without scorers (tests of the bookkeeping)
        f = features(p, ts)
        x, s = [f[k] for k in FEATURE_NAMES] + [0.0, 0.5], summary_of(p, ts)
        season = 0.0
    else:
        xd, _, s = model_features(scorer, p, ts)
        x = [xd[k] for k in MODEL_FEATURES]
        season = season_return(p, ts, scorer.horizon_days)
    # rounded once here, so the stored track (an envelope's ``track``) is exactly the live one
    sm = None if s is None else [s[0], round(s[1], 4), round(s[2], 4), season]
    t.pending.append((ts, [round(v, 4) for v in x], sm, False))
    t.last_snapshot_ms = max(t.last_snapshot_ms, ts)
    heapq.heappush(state.timers, (ts + cfg.horizon_ms + cfg.allowed_lateness_ms, LABEL, uid, ts))


def _fire(
    state: ChurnState,
    until_ms: int,
    lookup: Lookup,
    scorer: Scorer | None,
    cfg: ChurnConfig,
    alerts: list[ChurnAlert],
    labelled: list[Labelled],
) -> None:
    """Fire every timer due at or before ``until_ms``, in (due, kind, user) order."""
    timers, probes = state.timers, cfg.probe_days
    if scorer is not None:  # the analytic fit follows the clock: it has no events after it
        scorer.tick(state.clock_ms)
    while timers and timers[0][0] <= until_ms:
        due, kind, uid, ref = heapq.heappop(timers)
        t = state.users.get(uid)
        if t is None:
            continue
        if scorer is not None and _live(t, kind, due, ref, probes):
            # only a timer that acts moves the fit: the heap also holds superseded timers,
            # which a state rebuilt from the tracks after a restart does not, and a refit
            # at one of their instants put the analytic fit elsewhere than in a run without
            # a restart (an idle alert then fired at another check: kill -9 chaos test)
            scorer.tick(max(due, state.clock_ms))
        if kind == LABEL:
            for i, pend in enumerate(t.pending):
                if pend[0] == ref:
                    del t.pending[i]
                    _learn(state, scorer, labelled, pend, not pend[3])
                    break
        elif kind == PROBE:
            if due != t.probe_due_ms:  # superseded by an earlier one (step): dropped
                continue
            t.probe_due_ms = -1
            if t.probe_k >= len(probes):
                continue
            expected = t.anchor_ms + int(probes[t.probe_k] * DAY_MS)
            if expected > due:  # the user was active since: re-arm from the new anchor
                _arm_probe(state, uid, t, expected)
                continue
            p = lookup(uid)
            if p is not None:
                _snapshot(state, uid, t, p, due, cfg, scorer)
            t.probe_k += 1
            if t.probe_k < len(probes):
                _arm_probe(state, uid, t, t.anchor_ms + int(probes[t.probe_k] * DAY_MS))
        elif kind == OUTCOME:
            for i, w in enumerate(t.watched):
                if w.ts_ms == ref:
                    del t.watched[i]
                    state.outcomes.append(outcome(uid, w, cfg.horizon_ms))
                    break
        elif due == t.idle_due_ms:  # IDLE (a superseded idle timer is dropped)
            _idle(state, uid, t, due, lookup, scorer, cfg, alerts)


def _live(t: Track, kind: int, due: int, ref: int, probes: Sequence[float]) -> bool:
    """Whether a timer popped at ``due`` is one a rebuilt state (:func:`rebuild`) would
    hold too, so that both tick the analytic fit at the same instants: the user's live idle
    check (also when it only re-arms itself, the user having been active since), the live
    probe when it takes its snapshot, a label or outcome not yet resolved. Superseded ones
    (an older idle or probe timer, a probe that only re-arms from a new anchor, a resolved
    label or outcome) are not."""
    if kind == LABEL:
        return any(p[0] == ref for p in t.pending)
    if kind == OUTCOME:
        return any(w.ts_ms == ref for w in t.watched)
    if kind == PROBE:
        return (
            due == t.probe_due_ms
            and t.probe_k < len(probes)
            and t.anchor_ms + int(probes[t.probe_k] * DAY_MS) <= due
        )
    return due == t.idle_due_ms


def _arm_probe(state: ChurnState, uid: str, t: Track, due: int) -> None:
    heapq.heappush(state.timers, (due, PROBE, uid, 0))
    t.probe_due_ms = due


def _arm_idle(state: ChurnState, uid: str, t: Track, due: int) -> None:
    heapq.heappush(state.timers, (due, IDLE, uid, 0))
    t.idle_due_ms = due


def _idle(
    state: ChurnState, uid: str, t: Track, due: int, lookup: Lookup, scorer: Scorer | None,
    cfg: ChurnConfig, alerts: list[ChurnAlert],
) -> None:  # fmt: skip
    """An idle check: the episode's first check is ``idle_days`` after ``last_seen``, the
    next ones double the silence, until an alert or ``idle_checks`` checks."""
    idle_ms = int(cfg.idle_days * DAY_MS)
    check = t.last_seen_ms + idle_ms
    if check > due:  # active since: re-arm for the new episode (lazy)
        _arm_idle(state, uid, t, check)
        return
    t.idle_due_ms = -1
    if t.scored_episode_ms == t.last_seen_ms:
        return
    k = 0  # this check's index: the last one due
    while k + 1 < cfg.idle_checks and t.last_seen_ms + (idle_ms << (k + 1)) <= due:
        k += 1
    p = lookup(uid)
    if p is None or (p.n_orders == 0 and not cfg.alert_non_buyers):
        t.scored_episode_ms = t.last_seen_ms  # nothing to score until they come back
        return
    if scorer is not None and scorer.can_alert:
        prob, version, xf, reasons = alert_score(scorer, p, due)
        if math.isfinite(prob) and prob >= cfg.threshold:  # nan: cannot say, no alert
            alert = build_alert(
                uid, p, xf, prob, episode_start_ms=t.last_seen_ms, now_ms=due,
                contributions=reasons, model_version=version, policy=cfg.alert_policy,
            )  # fmt: skip
            alerts.append(alert)
            if all(w.ts_ms != due for w in t.watched):  # its outcome window opens
                t.watched.append(watch(alert))
                lateness = cfg.horizon_ms + cfg.allowed_lateness_ms
                heapq.heappush(state.timers, (due + lateness, OUTCOME, uid, due))
            t.scored_episode_ms = t.last_seen_ms
            return
    if k + 1 < cfg.idle_checks:
        _arm_idle(state, uid, t, t.last_seen_ms + (idle_ms << (k + 1)))
    else:
        t.scored_episode_ms = t.last_seen_ms


def advance(
    state: ChurnState, now_ms: int, lookup: Lookup, scorer: Scorer | None, cfg: ChurnConfig
) -> tuple[list[ChurnAlert], list[Labelled]]:
    """Move the partition's clock to ``now_ms`` (never backwards) and fire due timers.

    Resolved labels are learned by ``scorer`` (if given) in a deterministic order and also
    returned. The worker calls it for a partition that has been idle (its clock then
    follows the wall clock: ``SHOPSTREAM_IDLE_ADVANCE_S``), so idle customers are alerted
    without events of anyone else.
    """
    alerts: list[ChurnAlert] = []
    labelled: list[Labelled] = []
    _fire(state, now_ms, lookup, scorer, cfg, alerts, labelled)
    state.clock_ms = max(state.clock_ms, now_ms)
    return alerts, labelled


def step(
    state: ChurnState,
    profile: Profile | None,
    event: Event,
    scorer: Scorer | None,
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
        _fire(state, ts - 1, lookup, scorer, cfg, alerts, labelled)
        state.clock_ms = ts
    p = update_profile(profile, event)
    if event.type == "purchase" and scorer is not None:
        scorer.observe(uid, p.first_purchase_ms, p.last_purchase_ms, p.n_orders)
    t = state.users.get(uid)
    new = t is None
    if t is None:
        t = state.users[uid] = Track(anchor_ms=ts, last_seen_ms=ts)
    if event.type == "purchase" and t.watched:
        amount = (event.price or 0.0) * (event.quantity or 1)
        count_purchase(t.watched, ts_ms=ts, amount=amount, horizon_ms=cfg.horizon_ms,
                       coupon=bool(event.coupon_code))  # fmt: skip
    is_activity = cfg.label_mode == "activity" or event.type == "purchase"
    horizon = cfg.horizon_ms
    if is_activity and t.pending:  # mark snapshots whose window holds this activity
        keep: list[Pending] = []
        for pend in t.pending:
            snap_ts, x, sm, neg = pend
            if snap_ts < ts <= snap_ts + horizon:
                keep.append((snap_ts, x, sm, True))  # negative, learned when the window closes
            elif ts > snap_ts + horizon:  # window over, its timer still in the lateness slack
                _learn(state, scorer, labelled, pend, not neg)
            else:
                keep.append(pend)
        t.pending = keep
    if ts > t.last_seen_ms:
        t.last_seen_ms = ts
    if cfg.alerts:  # the episode's first idle check; an armed later check is superseded
        check = t.last_seen_ms + int(cfg.idle_days * DAY_MS)
        if t.idle_due_ms < 0 or t.idle_due_ms > check:
            _arm_idle(state, uid, t, check)
    if new or (is_activity and ts > t.anchor_ms):
        t.anchor_ms = ts
        t.probe_k = 1
        if t.last_snapshot_ms < 0 or ts - t.last_snapshot_ms >= cfg.snapshot_gap_ms:
            _snapshot(state, uid, t, p, ts, cfg, scorer)
        if len(cfg.probe_days) > 1:  # the first probe; an armed later one is superseded
            first = ts + int(cfg.probe_days[1] * DAY_MS)
            if t.probe_due_ms < 0 or t.probe_due_ms > first:
                _arm_probe(state, uid, t, first)
    return p, alerts, labelled
