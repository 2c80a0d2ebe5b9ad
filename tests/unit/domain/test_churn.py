"""Churn logic in event time: delayed labels, out-of-order/late events, alert rules."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from models.alive import Summary
from streams.core.events import Event
from streams.core.settings import Settings
from streams.domain.alerts import DEFAULT_TIERS, alert_id
from streams.domain.churn import MODEL_FEATURES, Labelled, advance, step
from streams.domain.churn_state import (
    PROBE,
    ChurnConfig,
    ChurnState,
    geometric_probes,
    rebuild,
    track_from_list,
    track_to_list,
)
from streams.domain.profile import DAY_MS, Profile

T0 = 1_704_067_200_000


def cfg(**overrides: Any) -> ChurnConfig:
    """The worker's churn configuration (its settings' defaults), with ``overrides``."""
    return ChurnConfig.from_settings(Settings(), **overrides)


H = 30 * DAY_MS
LATE = cfg().allowed_lateness_ms


class Stub:
    """Scorers with a fixed probability that record what they are told."""

    def __init__(self, p: float = 0.9, can_alert: bool = True) -> None:
        self.p = p
        self.can_alert = can_alert
        self.horizon_days = 30.0
        self.seasons: list[float] = []  # the annual-return signal of each label and score
        self.scored_seasons: list[float] = []
        self.learned: list[Labelled] = []
        self.summaries: list[Summary | None] = []
        self.observed: list[tuple[str, int]] = []
        self.ticks: list[int] = []

    def observe(self, uid: str, first_ms: int, last_ms: int, n_orders: int) -> None:
        self.observed.append((uid, n_orders))

    def tick(self, now_ms: int) -> None:
        self.ticks.append(now_ms)

    def analytic(self, s: Summary | None) -> float:
        return 0.25

    def learn(
        self, x: dict[str, float], s: Summary | None, y: bool, now_ms: int, season: float
    ) -> None:
        self.learned.append((x, y))
        self.summaries.append(s)
        self.seasons.append(season)

    def score(
        self, x: dict[str, float], s: Summary | None, season: float
    ) -> tuple[float, str, dict[str, float]]:
        self.scored_seasons.append(season)
        return self.p, "stub-v1", {"silence": x["log_idle"], "bg_p": -1.0, "rhythm": 0.5}


class Run:
    def __init__(self, config: ChurnConfig | None = None, model: Stub | None = None) -> None:
        self.cfg = config or cfg()
        self.model = model if model is not None else Stub()
        self.state = ChurnState()
        self.profiles: dict[str, Profile] = {}
        self.alerts: list[dict[str, Any]] = []
        self.labelled: list[Labelled] = []
        self.lookups: list[str] = []
        self.n = 0

    def lookup(self, uid: str) -> Profile | None:
        self.lookups.append(uid)
        return self.profiles.get(uid)

    def feed(self, uid: str, etype: str, day: float, price: float = 10.0) -> None:
        self.n += 1
        ts = T0 + int(day * DAY_MS)
        item = None if etype in ("search", "session_start") else "i1"
        e = Event(f"e{self.n}", etype, uid, f"{uid}-{int(day)}", ts, item_id=item, price=price)  # type: ignore[arg-type]
        p, alerts, labelled = step(
            self.state, self.profiles.get(uid), e, self.model, self.cfg, self.lookup
        )
        self.profiles[uid] = p
        self.alerts += alerts
        self.labelled += labelled

    def advance(self, day: float, extra_ms: int = 0) -> None:
        now = T0 + int(day * DAY_MS) + extra_ms
        alerts, labelled = advance(self.state, now, self.lookup, self.model, self.cfg)
        self.alerts += alerts
        self.labelled += labelled


def snap_days(labelled: list[Labelled]) -> list[tuple[int, bool]]:
    """(days since the last purchase at the snapshot, churned) of each label."""
    return [(round(math.expm1(x["log_recency"])), y) for x, y in labelled]


# --- labels ---------------------------------------------------------------------------


def test_purchase_within_horizon_makes_pending_snapshots_negative_learned_at_window_close() -> None:
    r = Run()
    r.feed("u1", "purchase", 0)
    r.feed("u1", "purchase", 10)
    assert r.labelled == []  # known negative, but learned in snapshot order, when due
    r.advance(40, LATE)
    # the snapshot at the first purchase (recency 0) and the 7-day probe are negative; the
    # snapshot at the second purchase saw no purchase within H: positive
    assert snap_days(r.labelled) == [(0, False), (7, False), (0, True)]
    assert r.model.learned == r.labelled
    assert list(r.labelled[0][0]) == list(MODEL_FEATURES)  # with the analytic score
    assert r.labelled[0][0]["bg_p"] == 0.25
    assert r.model.summaries[:2] == [(0, 0.0, 0.0), (0, 0.0, 7.0)]  # (x, t_x, T) at the snapshot


def test_silence_resolves_positive_only_after_horizon_plus_lateness() -> None:
    r = Run()
    r.feed("u1", "purchase", 0)
    r.advance(30, LATE - 1)
    assert r.labelled == []
    r.advance(30, LATE)
    assert snap_days(r.labelled) == [(0, True)]
    assert r.state.clock_ms == T0 + H + LATE


def test_late_purchase_inside_the_lateness_slack_still_counts() -> None:
    r = Run()
    r.feed("u1", "purchase", 0)
    r.feed("u2", "view", 30 + 0.5 / 24)  # the clock passes day 30 by half an hour
    r.feed("u1", "purchase", 29.9)  # arrives late, ts < clock
    r.advance(31)
    labels = {d: y for d, y in snap_days(r.labelled)}
    assert labels[0] is False  # the day-0 snapshot saw a purchase within H
    assert all(y is False for d, y in labels.items() if d < 29.9)


def test_out_of_order_events_do_not_move_last_seen_back_or_open_an_episode() -> None:
    r = Run()
    r.feed("u1", "purchase", 10)
    r.feed("u1", "view", 5)  # late
    assert r.profiles["u1"].last_seen_ms == T0 + 10 * DAY_MS
    assert r.state.users["u1"].last_seen_ms == T0 + 10 * DAY_MS
    r.advance(60)
    assert [a["alert_id"] for a in r.alerts] == [alert_id("u1", T0 + 10 * DAY_MS)]


def test_purchase_mode_ignores_views_activity_mode_counts_them() -> None:
    purchase = Run()
    activity = Run(cfg(label_mode="activity"))
    for r in (purchase, activity):
        r.feed("u1", "purchase", 0)
        r.feed("u1", "view", 3)
        r.advance(40)
    assert (0, True) in snap_days(purchase.labelled)
    assert (0, False) in snap_days(activity.labelled)


def test_probes_cover_every_silence_then_stop() -> None:
    """Labels exist for silences far past any weekly schedule (the model is asked about
    customers silent for years), O(log silence) of them; then nothing is left."""
    r = Run(cfg(alerts=False))
    r.feed("u1", "purchase", 0)
    r.advance(730)
    assert snap_days(r.labelled) == [(d, True) for d in (0, 7, 14, 28, 56, 112, 224, 448)]
    r.advance(4000)
    days = [d for d, _ in snap_days(r.labelled)]
    assert days == [int(d) for d in cfg().probe_days] == [int(d) for d in geometric_probes()]
    assert days[-1] > 3000
    assert r.state.timers == []  # nothing left for a long-gone user


def test_a_customer_back_from_a_silence_is_probed_from_the_return() -> None:
    """After a return the probes start again at 7 days, whatever probe was armed: the one
    due 28 days after the first purchase is superseded, not taken 12 days after the return
    (it was, by a worker that never restarted, while a worker restarted from the tracks
    probed on time)."""
    r = Run(cfg(alerts=False))
    r.feed("u1", "purchase", 0)
    r.advance(15)  # the probes at 7 and 14 days are taken; the next one is due at day 28
    r.feed("u1", "purchase", 16)
    r.advance(400)
    assert [d for d, _ in snap_days(r.labelled)] == [0, 7, 14, 0, 7, 14, 28, 56, 112, 224]
    r.advance(4000)
    assert r.state.timers == []


def test_a_state_rebuilt_from_its_tracks_goes_on_as_the_live_one() -> None:
    """What a restart does (the tracks of the profile envelopes, clock and timers derived by
    ``rebuild``), between any two events: the same labels, alerts, refits and tracks as a
    run that never stopped. Customers come back after silences of every length."""
    gaps = [1, 16, 3, 40, 2, 20, 9, 70, 5, 33, 1, 100]
    events: list[tuple[float, str, str]] = []
    for u in range(5):
        day = u / 7
        for i, gap in enumerate(gaps[u:] + gaps[:u]):
            day += gap
            events.append((day, f"u{u}", "purchase" if (i + u) % 3 else "view"))
    events.sort()

    def run(split_at: int | None) -> Run:
        r = Run()
        for i, (day, uid, etype) in enumerate(events):
            if i == split_at:
                stored = {u: orjson.dumps(track_to_list(t)) for u, t in r.state.users.items()}
                tracks = {u: track_from_list(orjson.loads(v)) for u, v in stored.items()}
                r.state = rebuild(tracks, r.cfg)
            r.feed(uid, etype, day)
        r.advance(800)
        return r

    clean = run(None)
    assert len(clean.labelled) > 100 and clean.alerts
    for split_at in range(1, len(events)):
        r = run(split_at)
        assert r.labelled == clean.labelled, split_at
        assert r.alerts == clean.alerts, split_at
        assert r.model.ticks == clean.model.ticks, split_at
        assert r.state.to_dict()["users"] == clean.state.to_dict()["users"], split_at


def test_timers_per_user_stay_bounded() -> None:
    r = Run()
    for i in range(2000):
        r.feed("u1", "purchase" if i % 50 == 0 else "view", i / 24)
    users = {t[2] for t in r.state.timers}
    assert users == {"u1"}
    # one probe, one idle timer, and label timers of at most one snapshot a day over H
    assert len(r.state.timers) <= 2 + 31


def test_cost_follows_due_users_not_all_users() -> None:
    r = Run(cfg(alerts=False))
    for u in range(300):
        r.feed(f"u{u}", "purchase", 0)
    r.advance(200)  # everybody's probes and labels are done
    r.lookups.clear()
    for i in range(100):
        r.feed("u0", "view", 200 + i / 100)
    assert set(r.lookups) <= {"u0"}


# --- alerts ---------------------------------------------------------------------------


def test_one_alert_per_idle_episode_and_none_for_active_users() -> None:
    r = Run()
    r.feed("u1", "purchase", 0, price=600.0)
    for d in range(60):
        r.feed("u2", "view", d)  # an active user drives the clock
    assert len(r.alerts) == 1
    a = r.alerts[0]
    assert set(a) == {
        "alert_id",
        "user_id",
        "probability",
        "threshold",
        "reasons",
        "segment",
        "action",
        "ts",
        "model_version",
        "group",
    }
    assert a["user_id"] == "u1" and a["alert_id"] == alert_id("u1", T0)
    assert a["ts"] == T0 + 14 * DAY_MS and a["probability"] == 0.9 and a["threshold"] == 0.5
    assert a["reasons"][0] == {"feature": "silence", "contribution": round(math.log1p(14), 4)}
    assert a["action"]["value_tier"] == "gold" and a["action"]["discount_pct"] == 20.0
    assert a["model_version"] == "stub-v1" and a["segment"] == "unassigned"
    r.advance(300)
    u1 = [a for a in r.alerts if a["user_id"] == "u1"]
    assert len(u1) == 1  # still one: same episode (u2 went idle after day 59: its own)

    r.feed("u1", "view", 301)  # back, then idle again: a new episode, a new id
    r.advance(330)
    assert [a["alert_id"] for a in r.alerts if a["user_id"] == "u1"] == [
        alert_id("u1", T0),
        alert_id("u1", T0 + 301 * DAY_MS),
    ]


class Rising(Stub):
    """P(churn) grows with the silence: 0.1 per week (log_idle is log1p of the idle days)."""

    def score(
        self, x: dict[str, float], s: Summary | None, season: float
    ) -> tuple[float, str, dict[str, float]]:
        self.scored = [*getattr(self, "scored", []), round(math.expm1(x["log_idle"]))]
        return min(math.expm1(x["log_idle"]) / 70, 1.0), "stub-v1", {}


def test_an_episode_is_checked_again_as_the_silence_doubles_until_one_alert() -> None:
    """A customer below the threshold after 14 silent days may cross it later in the same
    silence: checks at 14, 28, 56, ... days; one alert for the episode, then no more."""
    model = Rising()
    r = Run(model=model)
    r.feed("u1", "purchase", 0)
    r.advance(400)
    assert model.scored == [14, 28, 56]  # 0.2, 0.4, then 0.8: alerted, done
    assert [(a["alert_id"], a["ts"]) for a in r.alerts] == [(alert_id("u1", T0), T0 + 56 * DAY_MS)]


def test_below_threshold_at_every_check_no_alert_and_the_checks_end() -> None:
    model = Stub(p=0.3)
    r = Run(model=model)
    r.feed("u1", "purchase", 0)
    r.advance(14 * 32 + 1)
    assert r.alerts == [] and r.state.users["u1"].scored_episode_ms == T0
    model.p = 0.99  # after the last check (14 x 32 days) the episode is not scored again
    r.advance(2000)
    assert r.alerts == []
    assert not [t for t in r.state.timers if t[1] == 2]  # no idle timer left


def test_activity_starts_a_new_episode_with_its_own_first_check() -> None:
    """An armed later check of the old episode is superseded: the new episode's first check
    comes idle_days after the new activity, not when the old check was due."""
    model = Stub(p=0.3)
    r = Run(model=model)
    r.feed("u1", "purchase", 0)
    r.advance(30)  # checked at 14 and 28 (below); the next check was due at day 56
    model.p = 0.9
    r.feed("u1", "view", 40)
    r.advance(60)
    assert [(a["alert_id"], a["ts"]) for a in r.alerts] == [
        (alert_id("u1", T0 + 40 * DAY_MS), T0 + 54 * DAY_MS)
    ]


def test_no_alerts_while_the_scorers_cannot_alert() -> None:
    r = Run(model=Stub(can_alert=False))
    r.feed("u1", "purchase", 0)
    r.advance(20)
    assert r.alerts == []


def test_a_probability_that_cannot_be_computed_raises_no_alert() -> None:
    model = Stub(p=math.nan)
    r = Run(model=model)
    r.feed("u1", "purchase", 0)
    r.advance(20)
    assert r.alerts == []  # never a default probability
    model.p = 0.99  # computable again: the next check (day 28) alerts
    r.advance(100)
    assert [a["ts"] for a in r.alerts] == [T0 + 28 * DAY_MS]


def test_value_tiers_are_configurable() -> None:
    assert [t.name for t in DEFAULT_TIERS] == ["gold", "silver", "bronze"]
    r = Run(cfg(tiers=(DEFAULT_TIERS[2],)))
    r.feed("u1", "purchase", 0, price=900.0)
    r.advance(20)
    assert r.alerts[0]["action"]["value_tier"] == "bronze"


def scenario(r: Run, split_at: int | None = None) -> None:
    events = [
        (f"u{u}", "purchase" if (u + d) % 5 == 0 else "view", d + u / 10)
        for d in range(0, 80, 3)
        for u in range(6)
        if not (u < 3 and d > 20 + 10 * u)
    ]
    for i, (uid, etype, day) in enumerate(events):
        if i == split_at:  # restart from the serialised state
            raw = orjson.dumps(r.state.to_dict())
            r.state = ChurnState.from_dict(orjson.loads(raw))
        r.feed(uid, etype, day)
    r.advance(120)


def test_alerts_are_deterministic_and_survive_a_state_round_trip() -> None:
    a, b, c = Run(), Run(), Run()
    scenario(a)
    scenario(b)
    scenario(c, split_at=40)
    ids = [x["alert_id"] for x in a.alerts]
    assert ids and len(ids) == len(set(ids))
    assert a.alerts == b.alerts == c.alerts
    assert snap_days(a.labelled) == snap_days(c.labelled)


def test_config_from_settings_and_bad_state_version() -> None:
    c = ChurnConfig.from_settings(Settings(churn_horizon_days=20, churn_idle_days=5))
    assert (c.horizon_days, c.idle_days, c.threshold) == (20, 5, 0.5)
    with pytest.raises(ValueError, match="version"):
        ChurnState.from_dict({"v": 99})


def test_visitors_who_never_bought_are_not_alerted_unless_configured() -> None:
    default = Run()
    default.feed("u1", "view", 0)
    default.advance(30)
    assert default.alerts == []
    opted_in = Run(cfg(alert_non_buyers=True))
    opted_in.feed("u1", "view", 0)
    opted_in.advance(30)
    assert [a["action"]["value_tier"] for a in opted_in.alerts] == ["bronze"]


def test_the_scorers_see_purchases_and_the_clock() -> None:
    r = Run()
    r.feed("u1", "view", 0)
    r.feed("u1", "purchase", 1)
    r.feed("u1", "purchase", 2)
    assert r.model.observed == [("u1", 1), ("u1", 2)]  # purchases only
    r.advance(20)
    assert r.model.ticks == sorted(r.model.ticks) and r.model.ticks[-1] <= T0 + 20 * DAY_MS


def test_a_track_of_the_older_layout_restarts_its_labels() -> None:
    """Tracks stored before geometric probes hold pending [ts, x] of older features: they
    are dropped (at most H days of labels) and the probes restart."""
    from streams.domain.churn_state import rebuild, track_from_list

    old = [T0, T0 + DAY_MS, 9, True, True, -1, T0, [[T0, [1.0, 2.0]], [T0 + DAY_MS, [3.0]]]]
    t = track_from_list(old)
    assert (t.pending, t.probe_k, t.last_seen_ms) == ([], 1, T0 + DAY_MS)
    state = rebuild({"u1": t}, cfg())
    assert state.clock_ms == T0 + DAY_MS
    assert sorted(kind for _, kind, _, _ in state.timers) == [1, 2]  # a probe and an idle timer
    assert t.idle_due_ms == T0 + DAY_MS + int(cfg().idle_days * DAY_MS)  # the old flag, placed


def test_a_snapshot_taken_with_another_feature_list_is_not_learned() -> None:
    """Pending snapshots stored before a feature was added (envelopes of an older release)
    are dropped when their window closes; the others are learned."""
    r, intact = Run(), Run()
    for run in (r, intact):
        run.feed("u1", "purchase", 0)
    t = r.state.users["u1"]
    assert len(t.pending) == 1
    t.pending = [(ts, x[:-1], sm, neg) for ts, x, sm, neg in t.pending]  # one feature short
    for run in (r, intact):
        run.advance(120)
    assert len(r.labelled) == len(intact.labelled) - 1 == len(r.model.learned) > 0
    assert r.labelled == intact.labelled[1:]


def test_labels_and_alerts_carry_the_annual_return_signal() -> None:
    """A snapshot stores whether the customer ordered, a year earlier, in the weeks of its
    coming horizon; the label is learned with it, and an alert is scored with it."""
    r = Run(cfg(idle_days=14.0), Stub(p=0.1))  # below the threshold: every check scores
    r.feed("u1", "purchase", 0)
    r.feed("u1", "purchase", 340)  # a year after day 0, minus less than the 30-day horizon
    r.advance(420)
    taken = [(round(math.expm1(x["log_recency"])), season)
             for (x, _), season in zip(r.model.learned, r.model.seasons, strict=True)]  # fmt: skip
    assert (0, 0.0) in taken and (0, 1.0) in taken  # day 0: no year before; day 340: day 0
    assert set(r.model.seasons) == {0.0, 1.0} and 1.0 in r.model.scored_seasons
    t = r.state.users["u1"]
    assert all(sm is not None and len(sm) == 4 for _, _, sm, _ in t.pending)


def test_a_snapshot_stored_without_the_signal_is_learned_without_it() -> None:
    """Tracks stored before the annual-return signal hold ``[x, t_x, T]``: learned, season 0."""
    r = Run()
    r.feed("u1", "purchase", 0)
    t = r.state.users["u1"]
    t.pending = [(ts, x, None if sm is None else sm[:3], neg) for ts, x, sm, neg in t.pending]
    r.advance(40)
    assert r.model.seasons[0] == 0.0 and len(r.model.learned) >= 1


def test_tracks_of_the_release_before_the_probe_due_keep_their_probes() -> None:
    """A track stored with the probe flag (the release before ``probe_due_ms``) and the
    current pending layout: armed, its next probe is placed from the anchor; not armed, none.
    And a track written now reads, in that release's terms, as armed exactly when it has a
    probe (``false`` for none), so partitions can move between the two releases."""
    c = cfg()
    snap = [T0, [0.0] * len(MODEL_FEATURES), None, 0]
    armed = track_from_list([T0, T0, 2, True, -1, -1, T0, [snap]])
    idle = track_from_list([T0, T0, 2, False, -1, -1, T0, [snap]])
    state = rebuild({"a": armed, "b": idle}, c)
    probes = [(due, uid) for due, kind, uid, _ in state.timers if kind == PROBE]
    assert probes == [(T0 + int(c.probe_days[2] * DAY_MS), "a")]
    written = [track_to_list(t)[3] for t in (state.users["a"], state.users["b"])]
    assert written == [T0 + int(c.probe_days[2] * DAY_MS), False]
    assert bool(written[0]) and not written[1]  # the release before: armed, not armed
