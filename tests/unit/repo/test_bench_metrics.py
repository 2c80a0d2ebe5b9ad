"""make bench reads the worker's batch counters from /metrics (scripts/bench.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from streams.telemetry import Telemetry


def load_bench() -> Any:
    path = Path(__file__).resolve().parents[3] / "scripts" / "bench.py"
    spec = importlib.util.spec_from_file_location("bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


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
