"""The KPI store's fenced script against the real redis-server (streams.worker.kpis).

The script must agree with the Python reference (:func:`streams.domain.kpis.step`) on a
generated shop, apply a redelivered batch zero times (revenue is not counted twice), refuse
a zombie, and tally churn alerts and the customers who came back within the horizon.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from models.similarity import key_base
from streams.core.events import Event, Record, validate
from streams.core.settings import Settings
from streams.domain.kpis import KpiState, figures, kpi_record, step
from streams.domain.recommendations import rec_arm
from streams.tools.generate import generate
from streams.worker import kpi_store
from streams.worker.kpi_store import KpiStore

DAY = 86_400_000


def batch(
    rows: list[dict[str, Any]], start: int = 0, partition: int = 0
) -> list[tuple[Record, Event]]:
    out = []
    for i, row in enumerate(rows):
        ev = validate(row)
        out.append((Record("t.events", partition, start + i, None, None, incarnation="abc"), ev))
    return out


def store(redis: aioredis.Redis, settings: Settings) -> KpiStore:
    return KpiStore(redis, settings.redis_prefix, session_ttl_s=3600, horizon_ms=30 * DAY)


async def test_script_matches_the_reference_and_a_redelivery_changes_nothing(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    rows, _ = generate(users=60, seed=5, days=20)
    recs = batch(rows)
    kpis = store(redis_client, settings)
    ref = KpiState()
    for rec, ev in recs:
        r = kpi_record(rec.offset, ev)
        if r is not None:
            step(ref, r)
    half = len(recs) // 2
    applied1, _ = await kpis.apply(recs[:half])
    applied2, touched = await kpis.apply(recs[half - 50 :])  # overlaps: a partial redelivery
    counted = sum(kpi_record(0, e) is not None for _, e in recs)
    assert applied1 + applied2 == counted
    stored = {f["day"]: f for f in await kpis.days()}
    expected = {d: figures(d, c) for d, c in ref.days.items()}
    assert stored == expected
    revenue = sum(f["revenue"] for f in stored.values())
    assert revenue == pytest.approx(
        sum(r.get("price", 0) * r.get("quantity", 1) for r in rows if r["type"] == "purchase")
    )
    assert revenue > 0 and {f["day"] for f in touched} <= set(stored)
    # the whole input again (a redelivered batch): nothing applied, the same figures returned
    again, snapshots = await kpis.apply(recs)
    assert again == 0
    assert {f["day"]: f["revenue"] for f in snapshots} == {
        d: f["revenue"] for d, f in stored.items()
    }
    assert {f["day"]: f for f in await kpis.days()} == expected
    series = await kpis.series(sorted(expected)[-2])
    assert series == [{"day": d, "revenue": f["revenue"], "orders": f["orders"]}
                      for d, f in sorted(expected.items())[:-1]]  # fmt: skip
    first, last = sorted(expected)[3], sorted(expected)[5]
    assert [f["day"] for f in await kpis.days(first, last)] == sorted(expected)[3:6]


#: Any text a category or an arm may be (no lone surrogates: the contract's decoder refuses
#: them), in the counter names the script writes, and names it does not know.
NAMES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
FIELDS = st.one_of(
    st.sampled_from(["revenue", "s_purchase", "s_cart", "s_view", "items", "views", "carts"]),
    st.builds("{}@{}".format, st.sampled_from(["revenue", "purchases", "views", "rec_shown",
                                               "rec_revenue"]), NAMES),
    NAMES,
)  # fmt: skip


@hsettings(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(stored=st.dictionaries(st.integers(0, 60), st.dictionaries(
    FIELDS, st.integers(-(10**15), 10**15), max_size=10), max_size=8),
       cut=st.tuples(st.integers(0, 60), st.integers(0, 60)), per_call=st.integers(1, 4))
async def test_the_raw_days_are_the_days_counters(
    redis_client: aioredis.Redis, stored: dict[int, dict[str, int]], cut: tuple[int, int],
    per_call: int,
) -> None:  # fmt: skip
    """:meth:`KpiStore.raw_days` (JSON built by the store's Lua ``cjson``, what the forecast
    process gets) gives the figures :meth:`KpiStore.days` gives, whatever the names and
    counts in a day, for a day without counters, an empty range and a part of the days,
    however the days are cut into script calls."""
    default_per_call, kpi_store.RAW_DAYS_PER_CALL = kpi_store.RAW_DAYS_PER_CALL, per_call
    kpis = KpiStore(redis_client, f"t-{uuid.uuid4().hex[:10]}", session_ttl_s=60,
                    horizon_ms=DAY)  # fmt: skip
    days = {n: f"2024-01-{n:02d}" if n < 32 else f"2024-02-{n - 31:02d}" for n in stored}
    try:
        for n, fields in stored.items():
            await redis_client.zadd(kpis.base + "kpi:days", {days[n]: 0})
            if fields:  # a listed day may have no counters
                await redis_client.hset(kpis.base + "kpi:d:" + days[n], mapping=fields)
        first, last = f"2024-01-{min(cut):02d}", f"2024-01-{max(cut):02d}"
        for lo, hi in (("", ""), (first, last)):
            raw = orjson.loads(await kpis.raw_days(lo, hi))
            assert isinstance(raw, list)
            assert [figures(d, c) for d, c in raw] == await kpis.days(lo, hi)
    finally:
        kpi_store.RAW_DAYS_PER_CALL = default_per_call
        await redis_client.delete(kpis.base + "kpi:days",
                                  *(kpis.base + "kpi:d:" + d for d in days.values()))


async def test_a_moved_partition_or_lost_store_is_refused(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    base = key_base(settings.redis_prefix)
    await redis_client.hset(base + "owners", "t.events:0", "7")
    await redis_client.set(base + "epoch", "e1")
    kpis = store(redis_client, settings)
    rows = [{"event_id": "p", "type": "purchase", "user_id": "u", "session_id": "s",
             "item_id": "i", "price": 10.0, "ts": 1_709_251_200_000}]  # fmt: skip
    with pytest.raises(ResponseError, match="FENCED"):
        await kpis.apply(batch(rows), epoch="e1", owners={"t.events:0": "6"})
    with pytest.raises(ResponseError, match="EPOCH"):
        await kpis.apply(batch(rows), epoch="gone", owners={"t.events:0": "7"})
    assert await kpis.days() == []
    applied, _ = await kpis.apply(batch(rows), epoch="e1", owners={"t.events:0": "7"})
    assert applied == 1


def alert(aid: str, uid: str, ts: int, group: str) -> Any:
    return {"alert_id": aid, "user_id": uid, "ts": ts, "group": group,
            "action": {"value_tier": "gold"}}  # fmt: skip


async def test_alert_outcomes_count_purchases_within_the_horizon_once(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    t0 = 1_709_251_200_000
    kpis = store(redis_client, settings)

    def buy(n: int, uid: str, ts: int, price: float) -> dict[str, Any]:
        return {"event_id": f"b{n}", "type": "purchase", "user_id": uid, "session_id": f"s{n}",
                "item_id": "i", "price": price, "ts": ts}  # fmt: skip

    alerts = [alert("a1", "u1", t0, "treatment"), alert("a2", "u2", t0, "holdout"),
              alert("a3", "u3", t0, "treatment")]  # fmt: skip
    await kpis.apply([], alerts)
    await kpis.apply([], alerts)  # registered once
    rows = [
        buy(1, "u1", t0 + DAY, 20.0),
        buy(2, "u1", t0 + 2 * DAY, 5.0),
        buy(3, "u2", t0 + 31 * DAY, 50.0),  # after the horizon: not a return
        buy(4, "u9", t0 + 40 * DAY, 1.0),
    ]  # moves the clock past every horizon
    await kpis.apply(batch(rows))
    await kpis.apply(batch(rows))  # redelivered: the revenue is not counted twice
    got = {a["alert_id"]: a for a in await kpis.alerts()}
    assert {
        k: (a["group"], a["returned"], a["revenue"], a["resolved"]) for k, a in got.items()
    } == {
        "a1": ("treatment", True, 25.0, True),
        "a2": ("holdout", False, 0.0, True),
        "a3": ("treatment", False, 0.0, True),
    }


async def test_recommendation_feedback_per_arm_matches_the_reference_once(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """Impressions, distinct clicked and bought rec ids and attributed revenue per arm: the
    script equals the reference, and a redelivered batch adds nothing."""
    rows, _ = generate(users=60, seed=7, days=10)
    for i, row in enumerate(rows):  # every 3rd counted event and every purchase follows a
        # rec: two per user, so one id comes back several times a day (counted once)
        if row["type"] == "purchase" or (row["type"] in ("view", "add_to_cart") and i % 3 == 0):
            row["rec_id"] = f"r-{row['user_id']}-{i % 2}"
    recs = batch(rows)
    per_day = [(ev.ts_ms // DAY, ev.rec_id, ev.type == "purchase") for _, ev in recs if ev.rec_id]
    assert len(set(per_day)) < len(per_day)  # repeats: clicks and buys must be distinct
    bought = [(d, r) for d, r, p in per_day if p]
    assert len(set(bought)) < len(bought)
    shown = {ev.event_id for _, ev in recs[::5]}

    def arm_of(uid: str) -> str:
        return rec_arm(uid, 0.5)

    ref = KpiState()
    for rec, ev in recs:
        r = kpi_record(rec.offset, ev, arm_of(ev.user_id), shown=ev.event_id in shown)
        if r is not None:
            step(ref, r)
    kpis = store(redis_client, settings)
    half = len(recs) // 2
    await kpis.apply(recs[:half], arm_of=arm_of, shown=shown)
    await kpis.apply(recs[half - 40 :], arm_of=arm_of, shown=shown)  # a partial redelivery
    again, _ = await kpis.apply(recs, arm_of=arm_of, shown=shown)
    assert again == 0
    stored = {f["day"]: f for f in await kpis.days()}
    assert stored == {d: figures(d, c) for d, c in ref.days.items()}
    arms = {a: {k: sum(f["recs"].get(a, {}).get(k, 0) for f in stored.values())
                for k in ("rec_shown", "rec_clicks", "rec_buys", "rec_revenue")}
            for a in "AB"}  # fmt: skip
    counted = [(ev, arm_of(ev.user_id)) for _, ev in recs if kpi_record(0, ev) is not None]
    for a in "AB":
        mine = [ev for ev, arm in counted if arm == a]
        fed = [ev for ev in mine if ev.rec_id]
        assert arms[a]["rec_shown"] == sum(ev.event_id in shown for ev in mine) > 0
        assert arms[a]["rec_clicks"] == len({(ev.ts_ms // DAY, ev.rec_id) for ev in fed}) > 0
        bought = [ev for ev in fed if ev.type == "purchase"]
        assert arms[a]["rec_buys"] == len({(ev.ts_ms // DAY, ev.rec_id) for ev in bought}) > 0
        assert arms[a]["rec_revenue"] == pytest.approx(
            sum((ev.price or 0) * (1 if ev.quantity is None else ev.quantity) for ev in bought)
        )


async def test_an_erased_customer_stays_counted_but_named_nowhere(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """``forget``: the campaign tally and the stored outcomes keep the customer's alert and
    outcome (the figures do not change) without their id, in keys or values."""
    t0 = 1_709_251_200_000
    kpis = store(redis_client, settings)
    await kpis.apply([], [alert("a1", "u1", t0, "treatment"), alert("a2", "u2", t0, "holdout")])
    await kpis.keep_outcomes([{"alert_id": "a1", "user_id": "u1", "returned": True,
                               "revenue": 5.0}])  # fmt: skip
    before = sorted((a["alert_id"], a["group"], a["resolved"]) for a in await kpis.alerts())
    assert await kpis.forget_user("u1") == 3  # alert-of, the alert, the outcome
    assert await kpis.forget_user("u1") == 0
    after = await kpis.alerts()
    assert sorted((a["alert_id"], a["group"], a["resolved"]) for a in after) == before
    assert {a["alert_id"]: a["user_id"] for a in after} == {"a1": "", "a2": "u2"}
    assert (await kpis.outcomes())["a1"] == {"alert_id": "a1", "user_id": "", "returned": True,
                                              "revenue": 5.0}  # fmt: skip
    base = key_base(settings.redis_prefix)
    async for key in redis_client.scan_iter(match=base + "kpi:*", count=2000):
        kind = await redis_client.type(key)
        if kind == b"hash":
            dump = await redis_client.hgetall(key)
            assert not any(b"u1" in k or b'"u1"' in v for k, v in dump.items()), (key, dump)
