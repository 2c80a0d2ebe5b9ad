"""``GET /metrics`` of the real worker, parsed by Prometheus' own text-format parser."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, produce

T0 = 1_709_283_600_000


def scrape(
    worker: WorkerProcess,
) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    with urllib.request.urlopen(worker.url("/metrics"), timeout=5) as resp:
        ctype = resp.headers["Content-Type"]
        text = resp.read().decode()
    values = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return ctype, values


async def test_metrics_are_scraped_and_parsed(settings: Settings, tmp_path: Path) -> None:
    await ensure_topics(settings)
    views = [
        orjson.dumps({"event_id": f"m{n}", "type": "view", "user_id": f"u{n % 7}",
                      "session_id": f"s{n % 7}", "item_id": f"i{n % 11}", "ts": T0 + n * 1000})
        for n in range(120)
    ]  # fmt: skip
    records: list[tuple[bytes | None, bytes | None]] = [
        (orjson.loads(v)["user_id"].encode(), v) for v in views  # keyed by user_id (contract)
    ]
    records += [(b"x", b"not json"), (b"x", b"")]
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, records)
        deadline = time.monotonic() + 60
        values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while time.monotonic() < deadline:
            ctype, values = scrape(worker)
            if values.get(
                ("shopstream_events_in_total", (("type", "view"),))
            ) == 120 and values.get(("shopstream_dlq_total", (("reason", "empty"),))):
                break
            await asyncio.sleep(0.5)
        assert worker.alive(), worker.logs()
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
    assert values[("shopstream_events_in_total", (("type", "view"),))] == 120, values
    assert values[("shopstream_dlq_total", (("reason", "not_json"),))] == 1
    assert values[("shopstream_dlq_total", (("reason", "empty"),))] == 1
    assert values[("shopstream_messages_out_total", (("topic", "recommendations"),))] > 0
    assert values[("shopstream_batch_processing_seconds_count", ())] >= 1
    assert values[("shopstream_end_to_end_latency_seconds_count", ())] >= 122
    batches = values[("shopstream_batch_processing_seconds_count", ())]
    assert values[("shopstream_batch_wait_seconds_count", ())] == batches  # each one's oldest
    assert ("shopstream_consumer_lag", ()) in values
    assert values[("shopstream_segment_changes_total", (("segment", "prospects"),))] == 7
