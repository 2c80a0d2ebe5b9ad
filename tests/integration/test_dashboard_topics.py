"""What feeds the dashboard, end to end: ``shop.segments`` and ``shop.anomalies`` records for
generated users with known traits, and an injected bot kept out of the similarity counts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.integration.test_dashboard import storefront
from tests.support.worker import WorkerProcess, consume, produce


async def test_segments_and_anomalies_reach_their_topics_and_bots_are_not_learned(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(settings)
    rows = storefront()
    users = {e["user_id"] for e in rows}
    buyers = {e["user_id"] for e in rows if e["type"] == "purchase"}
    records = [(e["user_id"].encode(), orjson.dumps(e)) for e in rows]
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, records)
        worker.poll_json("/api/dashboard", lambda s: s["totals"]["events_in"] >= len(rows),
                         "all events processed", timeout=90.0)
        anomalies = [
            orjson.loads(r.value)
            for r in await consume(settings.topic_anomalies, settings, until=1, wait_s=30)
        ]
        segments = [
            orjson.loads(r.value)
            for r in await consume(settings.topic_segments, settings, until=len(users), wait_s=30)
        ]
        similar = {
            f"zz{i:03d}": worker.get_json(f"/items/zz{i:03d}/similar?k=5")["items"]
            for i in range(100, 200, 7)
        }
        assert worker.alive(), worker.logs()

    assert {a["user_id"] for a in anomalies if a["kind"] == "bot"} == {"bot-1"}
    assert all(a["reason"] and 0 <= a["score"] <= 1 for a in anomalies)
    # An unknown item falls back to popular items with score 0: nothing was learned for it.
    learned = {k: v for k, v in similar.items() if any(i["score"] > 0 for i in v)}
    assert learned == {}, "the bot's views reached the similarity counts"
    assert not any(i["item_id"].startswith("zz") for v in similar.values() for i in v)

    seen: dict[str, list[str]] = defaultdict(list)
    for rec in segments:
        assert set(rec) == {"user_id", "segment", "previous", "rfm", "cluster", "ts"}
        seen[rec["user_id"]].append(rec["segment"])
    assert set(seen) == users  # every user got a first segment
    for uid, names in seen.items():
        if uid in buyers:
            assert set(names) - {"prospects"}, (uid, names)
        else:
            assert set(names) == {"prospects"}, (uid, names)
