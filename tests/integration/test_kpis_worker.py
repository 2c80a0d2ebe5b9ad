"""Business figures with the real worker (issue 18, Build 5): ``GET /kpis`` and the
``shop.kpis`` snapshots equal the figures of the events sent, also after the worker was
killed between a batch's fence and its outputs and the batch came again (revenue is not
counted twice)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from tests.support.business import expected_days
from tests.support.chaos import read_all
from tests.support.worker import WorkerProcess, committed, produce


async def wait_consumed(settings: Settings, n: int, worker: WorkerProcess, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while await committed(settings) < n:
        assert time.monotonic() < deadline, f"worker did not catch up:\n{worker.logs()}"
        assert worker.alive(), worker.logs()
        await asyncio.sleep(0.5)


def shown(days: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["day"]: {"revenue": d["revenue"], "orders": d["orders"], "funnel": d["funnel"],
                       "cart_purchase": d["cart_purchase"]} for d in days}  # fmt: skip


def assert_same(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    assert sorted(got) == sorted(want)
    for day, w in want.items():
        g = got[day]
        assert g["revenue"] == pytest.approx(w["revenue"], abs=0.006), day
        assert {k: g[k] for k in ("orders", "funnel", "cart_purchase")} == {
            k: w[k] for k in ("orders", "funnel", "cart_purchase")
        }, day


async def test_figures_are_exact_after_a_crash_and_a_redelivered_batch(
    settings: Settings, tmp_path: Path
) -> None:
    # the killed worker never leaves its group: the next one is assigned the partitions when
    # the broker gives up on it, after the session timeout (10 s here, not the default 60 s)
    settings = settings.with_(batch_size=100, session_timeout_s=10.0)
    events, _ = generate(users=50, seed=18, days=20)
    want = expected_days(events)
    assert sum(d["revenue"] for d in want.values()) > 0
    await ensure_topics(settings)
    await produce(settings, [(e["user_id"].encode(), orjson.dumps(e)) for e in events])
    log = tmp_path / "worker.log"
    first = WorkerProcess(settings, log, crash_after_changelog=60).start()
    assert first.proc is not None
    status = await asyncio.to_thread(first.proc.wait, 180)
    assert status == 137, f"the crash point was not reached ({status}):\n{first.logs()}"
    before = await committed(settings)
    assert before < len(events)
    with WorkerProcess(settings, log) as worker:
        await asyncio.to_thread(worker.wait_healthy)
        await wait_consumed(settings, len(events), worker, limit_s=180)
        first_day, last_day = min(want), max(want)
        got = worker.get_json(f"/kpis?from={first_day}&to={last_day}")
    assert_same(shown(got["days"]), want)
    assert got["totals"]["revenue"] == pytest.approx(
        sum(d["revenue"] for d in want.values()), abs=0.01
    )
    # shop.kpis: one snapshot per day and batch; the highest version of each day is the
    # figure the API shows
    records = await read_all(settings.kafka_bootstrap, settings.topic_kpis, settings.partitions)
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        snap = orjson.loads(r.value)
        assert r.key.decode() == snap["day"]
        if snap["version"] >= latest.get(snap["day"], {"version": -1})["version"]:
            latest[snap["day"]] = snap
    assert_same(shown(list(latest.values())), want)
    print(
        f"verified: {len(events)} events, killed after 60 changelog writes with {before} "
        f"offsets committed; {len(want)} days, revenue {got['totals']['revenue']:.2f}, "
        f"{len(records)} shop.kpis snapshots"
    )
