"""``shopstream replay`` against the real broker and worker: pacing, order, injected faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from tests.support.chaos import read_all
from tests.support.worker import WorkerProcess, committed, consume, settings_env


def write_events(path: Path, users: int, days: int) -> list[dict[str, Any]]:
    events, _ = generate(users=users, seed=4, days=days)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return events


def run_replay(settings: Settings, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "replay", *args, "--json"],
        env=settings_env(settings),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result: dict[str, Any] = orjson.loads(proc.stdout.splitlines()[-1])
    return result


async def test_speed_scales_event_time_and_producers_keep_user_order(
    settings: Settings, tmp_path: Path
) -> None:
    events = write_events(tmp_path / "ev.jsonl", users=8, days=10)
    span_s = (events[-1]["ts"] - events[0]["ts"]) / 1000
    await ensure_topics(settings)
    started = time.monotonic()
    summary = run_replay(
        settings, str(tmp_path / "ev.jsonl"), "--speed", str(span_s / 3), "--producers", "3"
    )
    elapsed = time.monotonic() - started
    assert summary["events"] == len(events)
    assert summary["producers"] == 3
    assert 2.8 <= summary["seconds"] < 10, summary  # ~3 s of event time, plus delivery
    assert elapsed < 30
    records = await consume(settings.topic_events, settings, until=len(events), wait_s=30)
    assert len(records) == len(events)
    sent: dict[bytes, list[str]] = {}
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        sent.setdefault(rec.key, []).append(orjson.loads(rec.value)["event_id"])
    expected: dict[bytes, list[str]] = {}
    for e in events:
        expected.setdefault(e["user_id"].encode(), []).append(e["event_id"])
    assert sent == expected  # every user's events in file order


async def test_injected_malformed_records_all_reach_the_dlq(
    settings: Settings, tmp_path: Path
) -> None:
    events = write_events(tmp_path / "ev.jsonl", users=30, days=40)
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        summary = run_replay(
            settings,
            str(tmp_path / "ev.jsonl"),
            "--malformed", "0.05",
            "--duplicates", "0.02",
            "--out-of-order", "0.02",
            "--late", "0.02",
            "--seed", "11",
            "--producers", "2",
        )  # fmt: skip
        injected = summary["injected"]
        assert injected["malformed"] > 5 and injected["duplicate"] > 5, summary
        assert summary["events"] == len(events) + injected["duplicate"]
        # every record of the events topic processed and committed (the worker flushes its
        # outputs before it commits): the DLQ is then complete, read to its end
        sent = len(await read_all(settings.kafka_bootstrap, settings.topic_events,
                                  settings.partitions))  # fmt: skip
        deadline = time.monotonic() + 120
        while await committed(settings) < sent:
            assert time.monotonic() < deadline, f"{sent} records not committed\n{worker.logs()}"
            assert worker.alive(), worker.logs()
            await asyncio.sleep(0.3)
        dlq = await read_all(settings.kafka_bootstrap, settings.topic_dlq, settings.partitions)
    # same seed, same malformed count: the DLQ holds exactly the injected garbage
    assert len(dlq) == injected["malformed"], [dict(r.headers)["reason"] for r in dlq]
    reasons = {dict(r.headers)["reason"].decode() for r in dlq}
    assert reasons <= {"bad_utf8", "not_json", "not_object", "wrong_type", "bad_ts", "empty",
                       "missing_field"}, reasons  # fmt: skip
    assert len(reasons) >= 3
