"""The sales forecast with the real worker (issue 18, Build 6): what a consumer of
``shop.forecasts`` receives. One record per origin day and scope (the shop and the top
category), equal to :func:`streams.domain.business.forecast_panel` on the days before the
origin, and none for an origin that one partition has not passed yet -- not even when that
partition saw one outlier dated days ahead."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from models.forecast import iso_day
from streams.core.settings import Settings
from streams.domain.business import forecast_panel
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, consume

DAY_MS = 86_400_000
FIRST = int(time.time() * 1000) // DAY_MS - 40  # 40 days ago: every event time is credible


def purchase(partition: int, day: int, k: int, category: str, price: float) -> dict[str, Any]:
    uid = f"p{partition}-d{day}-{k}"
    return {"event_id": f"e-{uid}", "type": "purchase", "user_id": uid, "session_id": f"s-{uid}",
            "item_id": f"{category}-1", "category": category, "price": price, "quantity": 1,
            "ts": (FIRST + day) * DAY_MS + 3_600_000 * (k + 1)}  # fmt: skip


def shop_days(events: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"revenue": 0.0, "sessions": set(), "cat": defaultdict(lambda: [0.0, 0])}
    )
    for _, e in events:
        r = rows[e["ts"] // DAY_MS]
        r["revenue"] += e["price"]
        r["sessions"].add(e["session_id"])
        r["cat"][e["category"]][0] += e["price"]
        r["cat"][e["category"]][1] += 1
    return [{"n": n, "revenue": r["revenue"], "orders": len(r["sessions"]), "cat": r["cat"]}
            for n, r in sorted(rows.items())]  # fmt: skip


def expected(days: list[dict[str, Any]], origin: int, scope: str) -> dict[str, Any]:
    before = [d for d in days if d["n"] < origin]
    if scope == "shop":
        rows = [{"day": iso_day(d["n"]), "revenue": d["revenue"], "orders": d["orders"]}
                for d in before]  # fmt: skip
    else:
        cat = scope.removeprefix("category:")
        rows = [{"day": iso_day(d["n"]), "revenue": d["cat"][cat][0], "orders": d["cat"][cat][1]}
                for d in before]  # fmt: skip
    return forecast_panel(rows, iso_day(origin))


async def send(settings: Settings, events: list[tuple[int, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition, e in events:
            await producer.send(settings.topic_events, orjson.dumps(e),
                                key=e["user_id"].encode(), partition=partition)  # fmt: skip
        await producer.flush()
    finally:
        await producer.stop()


def never(records: list[Any]) -> bool:
    return False


def by_origin(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        value = orjson.loads(r.value)
        assert r.key.decode() == value["scope"]
        out[value["origin"]].append(value)
    return out


async def test_one_forecast_per_origin_and_scope_once_every_partition_passed_its_day(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(forecast_interval_s=0.5, forecast_categories=1)
    p0 = [(0, purchase(0, d, k, c, p)) for d in range(21)
          for k, (c, p) in enumerate([("shoes", 20.0 + 5 * (d % 7)), ("shoes", 30.0),
                                      ("hats", 3.0)])]  # fmt: skip
    p1 = [(1, purchase(1, d, k, c, p)) for d in range(14)
          for k, (c, p) in enumerate([("shoes", 10.0), ("hats", 4.0)])]  # fmt: skip
    outlier = [(1, purchase(1, 19, 5, "hats", 7.0))]  # one event dated 6 days ahead
    later = [(1, purchase(1, d, k, c, p)) for d in range(14, 21)
             for k, (c, p) in enumerate([("shoes", 10.0), ("hats", 4.0)])]  # fmt: skip
    await ensure_topics(settings)
    await send(settings, p0 + p1 + outlier)
    first_wave = [FIRST + d for d in range(7, 14)]  # ready after a week; partition 1 at day 13
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        await asyncio.to_thread(worker.wait_healthy)

        def has(origin: int) -> Any:
            return lambda recs: len(by_origin(recs).get(iso_day(origin), [])) >= 2

        records = await consume(settings.topic_forecasts, settings, done=has(first_wave[-1]),
                                wait_s=60)  # fmt: skip
        assert has(first_wave[-1])(records), worker.logs()
        # read everything for 2 s (four more ticks): nothing past partition 1's day 13
        records = await consume(settings.topic_forecasts, settings, done=never, wait_s=2)
        assert sorted(by_origin(records)) == [iso_day(n) for n in first_wave]
        await send(settings, later)
        records = await consume(settings.topic_forecasts, settings, done=has(FIRST + 20),
                                wait_s=60)  # fmt: skip
        assert has(FIRST + 20)(records), worker.logs()
        records = await consume(settings.topic_forecasts, settings, done=never, wait_s=2)
    got = by_origin(records)
    origins = [FIRST + d for d in range(7, 21)]
    assert sorted(got) == [iso_day(n) for n in origins]  # not 21: partitions are in day 20
    days = shop_days(p0 + p1 + outlier + later)
    for origin in origins:
        sent = got[iso_day(origin)]
        ids = sorted(r["forecast_id"] for r in sent)
        o = iso_day(origin)
        assert ids == [f"forecast:category:shoes:{o}", f"forecast:shop:{o}"]  # once each
        for record in sent:
            want = expected(days, origin, record["scope"])
            assert record["days"] == want["forecast"], (o, record["scope"])
            assert [d["day"] for d in record["days"]] == [iso_day(origin + i) for i in range(7)]
            assert (record["mae"], record["baseline_mae"], record["n"]) == (
                want["mae"], want["baseline_mae"], want["n"]
            )
