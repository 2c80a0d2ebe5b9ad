"""make bench reads the worker's batch counters from /metrics (scripts/bench_probe.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from streams.telemetry import Telemetry


def load_bench() -> Any:
    """scripts/bench_probe.py (make bench's probes), with scripts/ importable as when run."""
    scripts = str(Path(__file__).resolve().parents[3] / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("bench_probe")


def test_batch_counters_read_what_the_worker_exports() -> None:
    bench = load_bench()
    t = Telemetry()
    before = bench.batch_counters(t.render().decode())
    for n in (300, 100):
        t.on_batch(n, 0.05, {"view": n - 10, "purchase": 10})
        t.on_stages({"validate": 0.002, "users": 0.02})
    t.on_recommendations(30)
    after = bench.batch_counters(t.render().decode())
    assert (after["batches"], after["events"]) == (2, 400)
    assert after["busy_s"] == 0.1 and after["stage:users"] == 0.04
    assert after["out:recommendations"] == 30
    stats = bench.batch_stats(before, after)
    assert stats["events_per_batch"] == 200 and stats["ms_per_batch"] == 50
    assert stats["ms_per_batch_by_stage"] == {"validate": 2.0, "users": 20.0}
