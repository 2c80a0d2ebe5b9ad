"""``shopstream import orders`` into the real worker: an order history from long ago goes
through the events topic in event time, the worker learns from it (churn alerts are computed
and counted as stale), and no alert is published (backfill mode,
``SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS`` at its default). Run on a generated order-lines file
and on a bounded slice of the real Online Retail invoices when ../shared/data has them."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from tests.support.chaos import read_all
from tests.support.worker import WorkerProcess, settings_env

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "online_retail_invoices.csv"


def order_lines(users: int, days: int) -> str:
    """The purchases of a generated shop as order lines (order = session)."""
    events, _ = generate(users=users, seed=11, days=days)
    rows = ["order_id,customer_id,timestamp,item_id,quantity,price,category"]
    rows += [
        f"{e['session_id']},{e['user_id']},"
        f"{datetime.fromtimestamp(e['ts'] / 1000, tz=UTC).isoformat()},{e['item_id']},"
        f"{e.get('quantity') or 1},{e.get('price', 0)},{e.get('category', '')}"
        for e in events if e["type"] == "purchase"
    ]  # fmt: skip
    return "\n".join(rows) + "\n"


def run_import(settings: Settings, path: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "import", "orders", str(path), "--json", *args],
        env=settings_env(settings), capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dict(orjson.loads(proc.stdout))


def imported(worker: WorkerProcess, events: int, idle_s: float, timeout: float = 300) -> Any:
    """The dashboard totals once every event is processed and the idle clocks had time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), worker.logs()
        totals = worker.get_json("/api/dashboard")["totals"]
        if totals["events_in"] >= events:
            time.sleep(idle_s + 3)  # the partitions go idle; their clocks move on a little
            return worker.get_json("/api/dashboard")["totals"]
        time.sleep(0.5)
    raise AssertionError(f"not all {events} events processed:\n{worker.logs()}")


async def check_import(settings: Settings, path: Path, tmp_path: Path, *args: str) -> Any:
    idle_s = 3.0
    settings = settings.with_(churn_alert_max_age_days=7.0, idle_advance_s=idle_s)
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        summary = run_import(settings, path, *args)
        totals = imported(worker, summary["events"], idle_s)
        first = next(csv.DictReader(path.open()))
        recs = worker.get_json(f"/recommendations/{first.get('customer_id') or first['user_id']}")
    # the worker has stopped (its producer flushed): the topics are read to their ends
    alerts = await read_all(settings.kafka_bootstrap, settings.topic_churn_alerts,
                            settings.partitions)  # fmt: skip
    dlq = await read_all(settings.kafka_bootstrap, settings.topic_dlq, settings.partitions)
    assert alerts == [], [a.value for a in alerts[:3]]
    # >=: a worker under load may seek back and process some records again (fenced)
    assert totals["alerts"] == 0 and totals["events_in"] >= summary["events"]
    assert summary["send_errors"] == 0 and dlq == []
    return summary, totals, recs


async def test_a_generated_order_history_is_imported_without_publishing_alerts(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(order_lines(users=300, days=120))
    summary, totals, recs = await check_import(settings, path, tmp_path)
    assert recs["items"]  # order lines teach the similarity store
    assert summary["shape"] == "lines" and summary["skipped"] == {}
    assert summary["events"] == summary["rows"] and summary["customers"] > 200
    assert totals["stale_alerts"] > 0  # churn alerts were computed: held back, not published


async def test_a_slice_of_the_online_retail_invoices(settings: Settings, tmp_path: Path) -> None:
    if not REAL.exists():
        pytest.skip(f"{REAL} is not here (development data, not part of the project)")
    summary, _, recs = await check_import(settings, REAL, tmp_path, "--limit", "4000")
    assert (summary["shape"], summary["events"]) == ("totals", 4000)
    assert summary["first"] == "2010-12-01"
    assert recs["items"] == []  # the order-totals placeholder item "-" is hidden
