"""Churn alerts through Kafka: customers who stop buying get exactly one alert, active ones none.

A generated shop (400 customers, 150 days) trains the model online and keeps every
partition's event-time clock moving; ten hand-made customers buy every 5 days — five stop
after day 60, five keep going. Everything is in event time, so the replay is deterministic.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from examples.coupon_consumer import Ledger
from examples.coupon_consumer import run as issue_coupons
from streams.core.settings import Settings
from streams.domain.alerts import alert_group
from streams.kafka import ensure_topics
from streams.tools.generate import DEFAULT_START_MS, generate
from tests.support.chaos import read_all
from tests.support.worker import WorkerProcess, committed, produce

DAY = 86_400_000
STOPPERS = [f"stop{i}" for i in range(5)]
ACTIVE = [f"act{i}" for i in range(5)]


def regular_buyer(uid: str, last_day: int, every: int = 5) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for day in range(0, last_day + 1, every):
        ts, session = DEFAULT_START_MS + day * DAY + 3_600_000, f"{uid}-s{day}"
        base = {
            "user_id": uid,
            "session_id": session,
            "item_id": "i00001",
            "category": "books",
            "price": 20.0,
        }
        out.append({**base, "event_id": f"{uid}-{day}-v", "type": "view", "ts": ts})
        out.append(
            {
                **base,
                "event_id": f"{uid}-{day}-p",
                "type": "purchase",
                "quantity": 1,
                "ts": ts + 60_000,
            }
        )
    return out


async def wait_consumed(settings: Settings, n: int, worker: WorkerProcess, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while await committed(settings) < n:
        assert time.monotonic() < deadline, f"worker did not catch up:\n{worker.logs()}"
        assert worker.alive(), worker.logs()
        await asyncio.sleep(1)


async def check_outcomes(
    settings: Settings, events: list[dict[str, Any]], alerts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What a consumer of ``shop.alert-outcomes`` receives: one outcome per alert whose
    window closed (two days of slack for the partitions' clocks), with the customer's
    purchases in the window as the raw events say."""
    records = await consume(settings.topic_alert_outcomes, settings, until=10**6, wait_s=3)
    outcomes = [orjson.loads(r.value) for r in records]
    by_id = {o["alert_id"]: o for o in outcomes}
    assert len(by_id) == len(outcomes), "an outcome was published twice"
    horizon, end = int(settings.churn_horizon_days * DAY), max(e["ts"] for e in events)
    closed = {a["alert_id"] for a in alerts if a["ts"] + horizon + 2 * DAY < end}
    assert closed, "no alert window closed: the check would prove nothing"
    assert closed <= set(by_id) <= {a["alert_id"] for a in alerts}, closed - set(by_id)
    for a in alerts:
        o = by_id.get(a["alert_id"])
        if o is None:
            continue
        mine = [e["price"] * e.get("quantity", 1) for e in events if e["user_id"] == a["user_id"]
                and e["type"] == "purchase" and a["ts"] < e["ts"] <= a["ts"] + horizon]  # fmt: skip
        assert (o["orders"], o["group"]) == (len(mine), a["group"]), (a, o)
        assert abs(o["revenue"] - sum(mine)) <= 0.01 * max(1, len(mine)), (a, o)
    stopped = [by_id[a["alert_id"]] for a in alerts if a["user_id"] in STOPPERS]
    assert stopped and not any(o["returned"] for o in stopped)  # they never came back
    return outcomes


async def test_customers_who_stop_buying_get_exactly_one_alert(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(churn_idle_days=14.0, churn_horizon_days=30.0, batch_size=1000)
    events, _ = generate(users=400, seed=11, days=150)
    for uid in STOPPERS:
        events += regular_buyer(uid, last_day=60)
    for uid in ACTIVE:
        events += regular_buyer(uid, last_day=148)
    events.sort(key=lambda e: e["ts"])
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, [(e["user_id"].encode(), orjson.dumps(e)) for e in events])
        await wait_consumed(settings, len(events), worker, limit_s=240)
        records = await read_all(settings.kafka_bootstrap, settings.topic_churn_alerts,
                                 settings.partitions)  # fmt: skip
        alerts = [orjson.loads(r.value) for r in records]
        ids = Counter(a["alert_id"] for a in alerts)
        assert max(ids.values()) == 1, "an alert_id was published twice"
        per_user = Counter(a["user_id"] for a in alerts)
        assert {u: per_user[u] for u in STOPPERS} == dict.fromkeys(STOPPERS, 1), worker.logs()
        assert {u: per_user[u] for u in ACTIVE} == dict.fromkeys(ACTIVE, 0)
        alert = next(a for a in alerts if a["user_id"] == STOPPERS[0])
        assert alert["probability"] >= alert["threshold"] == 0.5
        assert alert["reasons"] and alert["action"]["type"] == "coupon"
        assert alert["segment"] != "unassigned"  # the segment model names it
        # Every alert carries its randomised group; the example storefront consumer issues
        # one coupon per treatment alert, even when run twice, and none for the holdout.
        groups = {a["alert_id"]: a["group"] for a in alerts}
        assert groups == {i: alert_group(i, settings.alert_holdout_share) for i in groups}
        ledger = Ledger(":memory:")
        await issue_coupons(ledger, settings, once=True)
        await issue_coupons(ledger, settings.with_(app_id=settings.app_id + "-again"), once=True)
        assert ledger.count() == sum(g == "treatment" for g in groups.values())
        user = worker.get_json(f"/users/{STOPPERS[0]}")
        assert user["churn_probability"] > 0.5
        # every published alert is tallied for the uplift, in its group (GET /campaigns)
        tally = worker.get_json("/campaigns")
        for g in ("treatment", "holdout"):
            counted = tally[g]["n"] + tally[g]["pending"]
            assert counted == sum(v == g for v in groups.values()), (g, tally)
        outcomes = await check_outcomes(settings, events, alerts)
        # the outcomes reach GET /campaigns: resolved by them, known by the alert's segment
        tally = worker.get_json("/campaigns")
        named = {o["segment"] for o in outcomes}
        assert named and set(tally["segments"]) == named - {""}, (named, tally["segments"])
        assert sum(tally["segments"][s][g]["n"] for s in named for g in ("treatment", "holdout")
                   ) == len(outcomes)  # fmt: skip
        print(
            f"verified: {len(alerts)} alerts, {len(ids)} distinct ids, duplicates: 0; "
            f"{len(outcomes)} outcomes ({sum(o['returned'] for o in outcomes)} returned), "
            f"stoppers alerted {[per_user[u] for u in STOPPERS]}, "
            f"active {[per_user[u] for u in ACTIVE]}"
        )
