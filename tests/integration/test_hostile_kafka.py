"""Issue 13 through Kafka: hostile records mixed into good traffic change nothing for the
good users — the real worker, the real broker and Redis.

The same good traffic runs twice (its own topics, group and Redis prefix each): once clean,
once with every hostile class of ``tests/support/hostile.py`` spread through it. One
partition and batches of one record, so outputs are deterministic and compare exactly:
profiles, recommendations, churn alerts, segment changes, anomalies and the Redis
similarity state must be identical; every hostile record is on the DLQ with its expected
reason, and nothing is a ``processing_error``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.chaos import produce, profile_table, read_all, redis_state, sibling
from tests.support.chaos_run import drain
from tests.support.hostile import HOSTILE, good_traffic
from tests.support.worker import WorkerProcess


async def run(settings: Settings, records: list[tuple[bytes, bytes]], log: Path) -> None:
    await ensure_topics(settings)
    await produce(settings.kafka_bootstrap, settings.topic_events, list(records))
    with WorkerProcess(settings, log) as worker:
        await asyncio.to_thread(worker.wait_healthy)
        await drain(settings, len(records), worker, timeout_s=240)


async def outputs(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("recommendations", "churn_alerts", "segments", "anomalies"):
        topic = getattr(settings, f"topic_{name}")
        recs = await read_all(settings.kafka_bootstrap, topic, settings.partitions)
        out[name] = [(r.key, r.value) for r in recs]
    table = await profile_table(settings)
    out["profiles"] = {  # but the source offsets, which the hostile records shift
        u: {k: v for k, v in env.items() if k not in ("o", "f")} for u, env in table.items()
    }
    redis = await redis_state(settings.redis_url, settings)
    for fence in ("off", "kpi:off"):  # the offset fences: hostile records shift the offsets
        redis.pop(fence, None)
    out["redis"] = redis
    return out


async def test_hostile_records_change_nothing_for_good_users(
    settings: Settings, tmp_path: Path
) -> None:
    # small input: the learned model's warm-up and the analytic scorer's fit, so alerts come
    hostile = settings.with_(partitions=1, batch_size=1, churn_min_labels=20, churn_min_customers=3)
    clean = sibling(hostile, "clean")
    good = [(orjson.loads(v)["user_id"].encode(), v) for v in good_traffic(24, 13, 90)]
    mixed = list(good)
    for i, (_, raw, _) in enumerate(HOSTILE):
        mixed.insert((i * 7919) % len(mixed), (b"h-user", raw))
    await asyncio.gather(
        run(hostile, mixed, tmp_path / "hostile.log"),
        run(clean, good, tmp_path / "clean.log"),
    )
    a, b = await outputs(hostile), await outputs(clean)
    for name in a:
        assert a[name] == b[name], f"{name} differ between the clean and the hostile run"
    assert b["recommendations"] and b["profiles"] and b["churn_alerts"], "a thin workload"

    dlq = await read_all(hostile.kafka_bootstrap, hostile.topic_dlq, hostile.partitions)
    offsets = {i for i, (k, _) in enumerate(mixed) if k == b"h-user"}
    got = {int(dict(r.headers)["source_offset"]): r for r in dlq}
    assert set(got) == offsets and len(dlq) == len(HOSTILE)
    reasons: Counter[str] = Counter()
    for offset, rec in got.items():
        headers = {k: v.decode() for k, v in rec.headers}
        expected = next(r for _, raw, r in HOSTILE if raw == mixed[offset][1])
        assert rec.value == mixed[offset][1]
        assert headers["reason"] in expected, (headers, expected)
        reasons[headers["reason"]] += 1
    assert "processing_error" not in reasons
    log = (tmp_path / "hostile.log").read_text(errors="replace")
    assert "\x1b" not in log and "\x00" not in log, "a control character reached the log"
    print(
        f"verified: {len(good)} good + {len(HOSTILE)} hostile records: profiles "
        f"({len(a['profiles'])}), recommendations ({len(a['recommendations'])}), alerts "
        f"({len(a['churn_alerts'])}), segment changes ({len(a['segments'])}), anomalies "
        f"({len(a['anomalies'])}) and {len(a['redis'])} Redis keys equal to the clean run; "
        f"DLQ {dict(sorted(reasons.items()))}, processing_error 0"
    )
