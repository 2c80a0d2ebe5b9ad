"""Alert outcomes (issue 18): each churn alert is resolved once, after its horizon in event
time, with what its customer really bought in the window, and survives a restart."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import orjson

from models.guard import GuardConfig
from models.guarded import GuardedChurn
from streams.core.events import Event
from streams.core.settings import Settings
from streams.domain.churn import advance, step
from streams.domain.churn_state import (
    OUTCOME,
    ChurnConfig,
    ChurnState,
    Track,
    rebuild,
    track_from_list,
    track_to_list,
)
from streams.domain.outcomes import Watched
from streams.domain.profile import DAY_MS, Profile
from streams.tools.generate import generate
from tests.support.fakes import fake_shop, message, new_processor, topic_of

T0 = 1_704_067_200_000  # 2024-01-01


def scorer() -> GuardedChurn:
    """A scorer that alerts from its first customer (the analytic fit)."""
    guard = GuardConfig(mode="auto", threshold=0.5, half_life_days=90.0, min_labels=500,
                        min_class=50, margin=0.01, z=2.0, decide_every=50)  # fmt: skip
    return GuardedChurn.new(horizon_days=30.0, kind="logistic", min_customers=1, guard=guard)


def buy(
    n: int, user: str, day: float, price: float = 10.0, qty: int = 1, coupon: str | None = None
) -> Event:
    return Event(f"{user}-{n}", "purchase", user, f"{user}-s{n}", T0 + int(day * DAY_MS),
                 item_id="i1", price=price, quantity=qty, coupon_code=coupon)  # fmt: skip


class Run:
    """One partition's churn state driven by events and the clock, collecting outputs."""

    def __init__(self, horizon_days: float = 30.0) -> None:
        self.cfg = ChurnConfig.from_settings(Settings(churn_horizon_days=horizon_days))
        self.state, self.scorer = ChurnState(), scorer()
        self.profiles: dict[str, Profile] = {}
        self.alerts: list[Any] = []
        self.outcomes: list[Any] = []

    def event(self, e: Event) -> None:
        p, alerts, _ = step(self.state, self.profiles.get(e.user_id), e, self.scorer, self.cfg,
                            self.profiles.get)  # fmt: skip
        self.profiles[e.user_id] = p
        self.alerts += alerts
        self.outcomes += self.state.take_outcomes()

    def until_alert(self, day: float, last: float = 400.0) -> Any:
        """Move the clock a day at a time from ``day`` until the first alert; it."""
        while not self.alerts and day < last:
            day += 1.0
            self.clock(day)
        assert len(self.alerts) == 1, self.alerts
        return self.alerts[0]

    def clock(self, day: float) -> None:
        alerts, _ = advance(self.state, T0 + int(day * DAY_MS), self.profiles.get, self.scorer,
                            self.cfg)  # fmt: skip
        self.alerts += alerts
        self.outcomes += self.state.take_outcomes()


def test_an_alert_is_resolved_once_after_its_horizon_with_the_purchases_in_its_window() -> None:
    run = Run(horizon_days=30.0)
    run.event(buy(0, "u1", 0.0))
    run.event(buy(1, "u1", 5.0))
    alert = run.until_alert(5.0)  # silent: alerted on an idle check
    a_day = (alert["ts"] - T0) / DAY_MS
    assert run.outcomes == []  # the window is open
    run.event(buy(2, "u1", a_day + 2, price=25.0, qty=2, coupon="SAVE-1"))  # in the window
    run.event(buy(3, "u1", a_day + 29, price=5.0))  # in the window
    run.clock(a_day + 29.9)
    assert run.outcomes == []  # not before the window's end (plus the allowed lateness)
    run.event(buy(4, "u1", a_day + 30.01, price=99.0))  # after the window: not counted
    run.clock(a_day + 31)
    [o] = run.outcomes
    assert o["alert_id"] == alert["alert_id"] and o["group"] == alert["group"]
    assert (o["returned"], o["orders"], o["revenue"]) == (True, 2, 55.0)
    assert o["days_to_return"] == 2.0
    pct = alert["action"]["discount_pct"]  # 50 paid with the coupon
    assert (o["redeemed"], o["coupon_orders"]) == (True, 1)
    assert o["discount_cost"] == round(50.0 * pct / (100 - pct), 2)
    assert o["window_end_ts"] == alert["ts"] + 30 * DAY_MS
    assert o["tier"] == alert["action"]["value_tier"]
    run.clock(a_day + 400)  # (silent again after the last purchase: a second episode)
    ids = [o["alert_id"] for o in run.outcomes]
    assert sorted(ids) == sorted(a["alert_id"] for a in run.alerts)  # each alert, once


def test_a_customer_who_stays_away_is_resolved_as_not_returned() -> None:
    run = Run(horizon_days=30.0)
    run.event(buy(0, "u2", 0.0))
    run.event(buy(1, "u2", 3.0))
    run.clock(200.0)
    assert len(run.alerts) == 1
    [o] = run.outcomes
    assert (o["returned"], o["orders"], o["revenue"], o["days_to_return"]) == (False, 0, 0.0, None)
    assert (o["redeemed"], o["discount_cost"]) == (False, 0.0)


def test_an_open_window_survives_a_restart_from_the_stored_tracks() -> None:
    """The track (what the profile envelope stores) holds the open window: a worker that
    rebuilds the partition's state from the tracks resolves it the same way."""
    run = Run(horizon_days=30.0)
    run.event(buy(0, "u1", 0.0))
    run.event(buy(1, "u1", 5.0))
    alert = run.until_alert(5.0)
    a_day = (alert["ts"] - T0) / DAY_MS
    run.event(buy(2, "u1", a_day + 1, price=7.5))
    stored = {u: orjson.loads(orjson.dumps(track_to_list(t))) for u, t in run.state.users.items()}
    restarted = Run(horizon_days=30.0)
    restarted.state = rebuild({u: track_from_list(v) for u, v in stored.items()}, run.cfg)
    restarted.profiles, restarted.scorer = run.profiles, run.scorer
    assert any(kind == OUTCOME for _, kind, _, _ in restarted.state.timers)
    for r in (run, restarted):
        r.event(buy(3, "u1", a_day + 10, price=2.5))
        r.clock(a_day + 40)
    assert run.outcomes == restarted.outcomes and len(run.outcomes) == 1
    assert run.outcomes[0]["revenue"] == 10.0


def test_tracks_without_open_windows_keep_their_layout() -> None:
    t = Track(anchor_ms=5, last_seen_ms=9)
    assert len(track_to_list(t)) == 8  # envelopes written before this change read the same
    t.watched.append(Watched("a", 1, "holdout", "gold", 20.0, 1, 250, 3, 1, 63, "champions"))
    assert track_from_list(track_to_list(t)) == t
    assert track_from_list(track_to_list(t)[:8]).watched == []


def test_every_alert_of_a_generated_shop_gets_the_outcome_its_events_say() -> None:
    """Through the batch processor (4 partitions' worth of users in one): every published
    alert whose window closed has exactly one outcome, and its counts are those of the
    customer's purchases in the window, recomputed here from the raw events."""
    settings = Settings(max_events_per_min=0, churn_alert_max_age_days=0)
    events, _ = generate(users=120, seed=5, days=150)
    shop = fake_shop(settings)
    proc = new_processor(shop)
    records = [message("t", 0, i, e["user_id"].encode(), orjson.dumps(e))
               for i, e in enumerate(events)]  # fmt: skip

    async def run() -> None:
        for i in range(0, len(records), 300):
            await proc.process(records[i : i + 300])

    asyncio.run(run())
    alerts = [orjson.loads(v) for _, v, _ in topic_of(shop, "churn_alerts").sent if v]
    outcomes = [orjson.loads(v) for _, v, _ in topic_of(shop, "alert_outcomes").sent if v]
    assert alerts, "the generated shop raised no alert: the test would prove nothing"
    horizon = int(settings.churn_horizon_days * DAY_MS)
    end = max(int(e["ts"]) for e in events)
    lateness = ChurnConfig.from_settings(settings).allowed_lateness_ms
    closed = {a["alert_id"] for a in alerts if a["ts"] + horizon + lateness < end}
    by_id = {o["alert_id"]: o for o in outcomes}
    assert len(by_id) == len(outcomes), "an outcome was published twice"
    assert closed <= set(by_id) <= {a["alert_id"] for a in alerts}
    buys: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for e in events:
        if e["type"] == "purchase":
            buys[e["user_id"]].append((int(e["ts"]), e["price"] * e.get("quantity", 1)))
    for a in alerts:
        o = by_id.get(a["alert_id"])
        if o is None:
            continue
        mine = [v for ts, v in buys[a["user_id"]] if a["ts"] < ts <= a["ts"] + horizon]
        assert (o["orders"], o["returned"]) == (len(mine), bool(mine)), (a, o)
        assert o["segment"] == a["segment"] != "", (a, o)  # the segment the alert named
        assert abs(o["revenue"] - sum(mine)) < 0.01 * max(1, len(mine)), (a, o)
    returned = sum(o["returned"] for o in outcomes)
    assert 0 < returned < len(outcomes), "all or none returned: the check would be weak"
