"""Every stage of a batch is charged in the stage metrics the benchmark's stage table reads
(``shopstream_batch_stage_seconds_total`` and its wall-time twin), the ``changelog`` stage
only for a batch that wrote envelopes (in-memory I/O; the real worker's metrics:
tests/unit/repo/test_bench_metrics.py)."""

from __future__ import annotations

import orjson

from streams.core.settings import Settings
from tests.support.fakes import fake_shop, message, new_processor
from tests.support.hostile import NOW_MS, good_traffic

STAGES = ("validate", "classify", "anomalies", "users", "publish", "similarity", "deliver",
          "changelog", "telemetry")  # fmt: skip


def stage_seconds(shop: object, wall: bool = False) -> dict[str, float]:
    telemetry = shop.telemetry  # type: ignore[attr-defined]
    metric = telemetry.m_stage_wall if wall else telemetry.m_stage
    return {
        s.labels["stage"]: s.value
        for s in metric.collect()[0].samples
        if s.name.endswith("_total")
    }


async def test_each_stage_is_charged_and_the_changelog_only_when_envelopes_were_written() -> None:
    shop = fake_shop(Settings())
    proc = new_processor(shop)
    msgs = [
        message("events", 0, offset, orjson.loads(v)["user_id"].encode(), v, NOW_MS / 1000)
        for offset, v in enumerate(good_traffic(users=8, seed=3, days=20)[:200])
    ]
    await proc.process(msgs)
    first, first_wall = stage_seconds(shop), stage_seconds(shop, wall=True)
    assert set(STAGES) <= set(first), sorted(first)
    assert set(STAGES) <= set(first_wall), sorted(first_wall)
    assert first["changelog"] > 0 and first["users"] > 0
    assert all(first_wall[s] + 1e-3 >= first[s] for s in STAGES)  # a stage waits, or not

    await proc.process(msgs)  # the same records again: all redelivered, no envelope written
    again = stage_seconds(shop)
    assert again["changelog"] == first["changelog"]
    assert again["validate"] > first["validate"]
