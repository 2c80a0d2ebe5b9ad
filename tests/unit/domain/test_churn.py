"""Churn logic in event time: delayed labels, out-of-order/late events, alert rules."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.core.events import Event
from streams.core.settings import Settings
from streams.domain.alerts import DEFAULT_TIERS, alert_id
from streams.domain.churn import Labelled, advance, step
from streams.domain.churn_state import ChurnConfig, ChurnState
from streams.domain.profile import DAY_MS, Profile

T0 = 1_704_067_200_000


def cfg(**overrides: Any) -> ChurnConfig:
    """The worker's churn configuration (its settings' defaults), with ``overrides``."""
    return ChurnConfig.from_settings(Settings(), **overrides)



H = 30 * DAY_MS
LATE = cfg().allowed_lateness_ms


class Stub:
    """A model with a fixed probability that records what it learns."""

    model_version = "stub-v1"

    def __init__(self, p: float = 0.9, n_learned: int = 10_000) -> None:
        self.p = p
        self.n_learned = n_learned
        self.learned: list[Labelled] = []

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return self.p

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        self.learned.append((x, y))
        self.n_learned += 1

    def contributions(self, x: dict[str, float]) -> dict[str, float]:
        return {"idle_days": x["idle_days"] / 10, "p_alive": -1.0, "recency_days": 0.5}


class Run:
    def __init__(self, config: ChurnConfig | None = None, model: Stub | None = None) -> None:
        self.cfg = config or cfg(min_labels_for_alerts=0)
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
    return [(round(x["recency_days"]), y) for x, y in labelled]


# --- labels ---------------------------------------------------------------------------


def test_purchase_within_horizon_resolves_pending_snapshots_negative() -> None:
    r = Run()
    r.feed("u1", "purchase", 0)
    r.feed("u1", "purchase", 10)
    # the snapshot at the purchase (recency 0) and the 7-day probe, both now negative
    assert snap_days(r.labelled) == [(0, False), (7, False)]
    assert r.model.learned == r.labelled


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
    activity = Run(cfg(label_mode="activity", min_labels_for_alerts=0))
    for r in (purchase, activity):
        r.feed("u1", "purchase", 0)
        r.feed("u1", "view", 3)
        r.advance(40)
    assert (0, True) in snap_days(purchase.labelled)
    assert (0, False) in snap_days(activity.labelled)


def test_probes_stop_after_the_last_offset() -> None:
    r = Run(cfg(alerts=False))
    r.feed("u1", "purchase", 0)
    r.advance(400)
    days = [d for d, _ in snap_days(r.labelled)]
    assert days == [int(d) for d in cfg().probe_days]
    assert r.state.timers == []  # nothing left for a long-gone user


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
    }
    assert a["user_id"] == "u1" and a["alert_id"] == alert_id("u1", T0)
    assert a["ts"] == T0 + 14 * DAY_MS and a["probability"] == 0.9 and a["threshold"] == 0.5
    assert a["reasons"][0] == {"feature": "idle_days", "contribution": 1.4}
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


def test_below_threshold_no_alert_and_no_rescoring() -> None:
    model = Stub(p=0.3)
    r = Run(model=model)
    r.feed("u1", "purchase", 0)
    r.advance(20)
    model.p = 0.99  # a later, higher score does not reopen the episode
    r.advance(100)
    assert r.alerts == []


def test_no_alerts_before_the_model_has_learned_enough() -> None:
    r = Run(cfg(min_labels_for_alerts=200), Stub(n_learned=0))
    r.feed("u1", "purchase", 0)
    r.advance(20)
    assert r.alerts == []


def test_value_tiers_are_configurable() -> None:
    assert [t.name for t in DEFAULT_TIERS] == ["gold", "silver", "bronze"]
    r = Run(cfg(min_labels_for_alerts=0, tiers=(DEFAULT_TIERS[2],)))
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
    opted_in = Run(cfg(min_labels_for_alerts=0, alert_non_buyers=True))
    opted_in.feed("u1", "view", 0)
    opted_in.advance(30)
    assert [a["action"]["value_tier"] for a in opted_in.alerts] == ["bronze"]
