"""Quiet partitions and backfills, through Kafka with a real worker and the wall clock.

* A customer who goes silent on a partition nobody else writes to is alerted once, on time:
  the partition's clock follows the wall clock while it is idle (``SHOPSTREAM_IDLE_ADVANCE_S``).
* Importing old history publishes no stale coupons: alerts older than
  ``SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS`` are counted in ``/metrics``, not published, and the
  idle clocks of the replayed partitions advance by the wall time that passed, never to "now".
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.evaluate_churn import partition_of
from streams.tools.generate import generate
from tests.support.chaos import read_all
from tests.support.worker import WorkerProcess, committed, consume, produce

DAY_S = 86_400.0
IDLE_S = 5.0  # the customer is alerted after this much silence (the test waits 3x it)
ADVANCE_S = 2.0  # a partition with no record for this long is idle


def quiet_user(partitions: int, partition: int) -> str:
    """A user id that Kafka's key partitioner puts on ``partition``."""
    users = (f"quiet{i}" for i in range(1000))
    return next(u for u in users if partition_of(u, partitions) == partition)


def metric(text: str, name: str) -> float:
    """The value of an unlabelled Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_a_customer_silent_on_a_quiet_partition_is_alerted_once_on_time(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(
        idle_advance_s=ADVANCE_S,
        churn_alert_max_age_days=7.0,  # the default: this alert is fresh
        churn_idle_days=IDLE_S / DAY_S,
        churn_horizon_days=1.0,
        churn_min_customers=1,  # one customer on the partition: the fit leans on its prior
    )
    uid = quiet_user(settings.partitions, 1)  # nobody else writes to any partition
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        now_ms = int(time.time() * 1000)
        base = {"user_id": uid, "session_id": f"{uid}-s", "item_id": "i1", "category": "books",
                "price": 25.0}  # fmt: skip
        events = [
            {**base, "event_id": f"{uid}-v", "type": "view", "ts": now_ms},
            {**base, "event_id": f"{uid}-p", "type": "purchase", "quantity": 1, "ts": now_ms + 1},
        ]
        await produce(settings, [(uid.encode(), orjson.dumps(e)) for e in events])
        sent = time.monotonic()
        deadline_s = IDLE_S + ADVANCE_S + 20.0  # the configured delay, with slack for load
        records = await consume(
            settings.topic_churn_alerts, settings, until=1, wait_s=deadline_s + 10.0
        )
        waited = time.monotonic() - sent
        assert len(records) == 1, f"no alert within {deadline_s + 10:.0f}s:\n{worker.logs()}"
        assert waited <= deadline_s, f"alert after {waited:.1f}s, allowed {deadline_s:.0f}s"
        alert = orjson.loads(records[0].value)
        assert alert["user_id"] == uid and alert["model_version"] == "churn-mbgnbd-v1"
        assert alert["ts"] >= now_ms + 1 + IDLE_S * 1000  # not before the silence was long enough
        await asyncio.sleep(2 * IDLE_S)  # more silence, more idle ticks: still one alert
        again = await read_all(settings.kafka_bootstrap, settings.topic_churn_alerts,
                               settings.partitions)  # fmt: skip
        assert len(again) == 1, f"alerted {len(again)} times"
        models = worker.get_json("/models")
        assert models["partitions"]["1"]["champion"] == "analytic"
        print(f"verified: one alert for a customer silent on a quiet partition after {waited:.1f}s "
              f"(idle {IDLE_S:g}s + idle advance {ADVANCE_S:g}s)")  # fmt: skip


async def test_a_backfill_publishes_no_stale_alerts(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(
        idle_advance_s=1.0, churn_alert_max_age_days=7.0, churn_idle_days=14.0, batch_size=1000
    )  # the shipped age limit, and idle clocks on
    events, _ = generate(users=120, seed=11, days=120)  # 2024: long before the wall clock
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, [(e["user_id"].encode(), orjson.dumps(e)) for e in events])
        deadline = time.monotonic() + 240
        while await committed(settings) < len(events):
            assert time.monotonic() < deadline and worker.alive(), worker.logs()
            await asyncio.sleep(1)
        await asyncio.sleep(4 * settings.idle_advance_s)  # idle ticks run on both partitions
        with urllib.request.urlopen(worker.url("/metrics"), timeout=5) as resp:
            stale = metric(resp.read().decode(), "shopstream_churn_alerts_stale_total")
        published = await read_all(settings.kafka_bootstrap, settings.topic_churn_alerts,
                                   settings.partitions)  # fmt: skip
        assert published == [], f"{len(published)} stale alerts published"
        assert stale > 0, "the replay must raise (stale) alerts for this test to mean anything"
        parts = worker.get_json("/models")["partitions"]
        past = {}  # how far each partition's clock moved past its last event
        for p in range(settings.partitions):
            last = max(e["ts"] for e in events if partition_of(e["user_id"], 2) == p)
            past[p] = parts[str(p)]["clock_ms"] - last
        assert all(0 <= ms < 600_000 for ms in past.values()), past  # wall time, not "now"
        assert any(ms > 0 for ms in past.values()), past  # and the idle clocks did move
        print(f"verified: {stale:.0f} stale alerts counted, none published; idle clocks "
              f"{past} ms past each partition's last event")  # fmt: skip
