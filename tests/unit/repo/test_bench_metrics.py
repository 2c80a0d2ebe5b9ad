"""make bench: the worker's batch counters from /metrics, CPU per event from /proc stat, the
latest.json schema and the tables generated from it (scripts/bench_probe.py, bench_report.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from streams.telemetry import Telemetry
from tests.support.scripts import load_script


def load_bench() -> Any:
    """scripts/bench_probe.py (make bench's probes), with scripts/ importable as when run."""
    return load_script("bench_probe")


def test_batch_counters_read_what_the_worker_exports() -> None:
    bench = load_bench()
    t = Telemetry()
    before = bench.batch_counters(t.render().decode())
    now = time.time()  # Telemetry's clock: each batch started 50 ms ago
    for n, oldest in ((300, now - 0.08), (100, now - 0.06)):  # waited ~30 and ~10 ms
        t.on_batch(n, 0.05, {"view": n - 10, "purchase": 10}, [oldest, now - 0.055])
        t.on_stages({"validate": 0.002, "users": 0.02}, {"validate": 0.003, "users": 0.04})
    t.on_recommendations(30)
    after = bench.batch_counters(t.render().decode())
    assert (after["batches"], after["events"]) == (2, 400)
    assert after["busy_s"] == 0.1 and after["stage:users"] == 0.04
    assert after["out:recommendations"] == 30
    stats = bench.batch_stats(before, after)
    assert stats["events_per_batch"] == 200 and stats["ms_per_batch"] == 50
    assert abs(stats["oldest_wait_ms"] - 20.0) < 2  # the mean of ~30 and ~10 ms
    assert stats["ms_per_batch_by_stage"] == {"validate": 2.0, "users": 20.0}
    assert stats["wall_ms_per_batch_by_stage"] == {"validate": 3.0, "users": 40.0}
    report = load_script("bench_report")
    assert report.stage_us_per_event(stats) == {"validate": 10.0, "users": 100.0}  # µs per event
    walls = report.stage_us_per_event(stats, "wall_ms_per_batch_by_stage")
    assert walls == {"validate": 15.0, "users": 200.0}


def test_cpu_ticks_are_read_after_the_command_name() -> None:
    """utime + stime of /proc/PID/stat, even when the command name holds spaces and ')'."""
    bench = load_bench()
    line = "777 (a b) c)) R 1 777 777 0 -1 4194560 500 0 0 0 1234 56 7 8 20 0 1 0 99 1 1"
    assert bench.stat_cpu_ticks(line) == 1234 + 56
    import os

    own = bench.stat_cpu_ticks(Path("/proc/self/stat").read_text()) / os.sysconf("SC_CLK_TCK")
    times = os.times()
    assert abs(own - (times.user + times.system)) < 0.05


def test_cpu_per_event_is_the_cpu_delta_over_the_drain_divided_by_events() -> None:
    bench = load_bench()
    first = bench.Sample(1.0, 100, 5000, 150.0, {"worker": 10.0, "redis": 4.0, "kafka": 2.0})
    last = bench.Sample(11.0, 5000, 5000, 160.0, {"worker": 11.0, "redis": 4.25, "kafka": 2.2})
    got = bench.cpu_us_per_event(first, last, 4900)
    assert got == {"kafka": 40.8, "redis": 51.0, "worker": 204.1, "workers": 204.1}
    assert bench.cpu_us_per_event(first, last, 0) == {}


def test_committed_latest_json_has_every_headline_figure() -> None:
    report = load_script("bench_report")
    latest = orjson.loads((report.RESULTS / "latest.json").read_bytes())
    assert report.check(latest) == []
    for key in ("pipeline_eps", "ceiling_eps", "ratio", "p99_ms", "rss_mb", "faust_noop_eps",
                "worker_cpu_us_per_event", "redis_cpu_us_per_event",
                "broker_cpu_us_per_event"):  # fmt: skip
        assert key in report.SCHEMA
    broken = {k: v for k, v in latest.items() if k != "faust_noop_eps"}
    assert report.check(broken) == ["faust_noop_eps: missing"]
    no_config = latest | {"configs": {"shared": {}}}
    assert report.check(no_config)[0] == "configs.shared.pipeline_eps: missing"


def test_readme_and_docs_figures_are_generated_from_latest_json() -> None:
    """The README's, docs/performance.md's and docs/operations.md's figures are those of
    bench/results/latest.json: regenerate with `python scripts/bench_report.py`."""
    report = load_script("bench_report")
    found = set()
    for path in report.TARGETS:
        text = path.read_text()
        for name, body in report.blocks().items():
            if f"<!-- bench:{name} -->" in text:
                found.add(name)
                assert f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->" in text, (
                    f"{path.name}: run python scripts/bench_report.py"
                )
    assert found == {"readme", "performance", "sizing"}


def test_the_box_check_is_reported_when_the_run_has_one() -> None:
    report = load_script("bench_report")
    latest = orjson.loads((report.RESULTS / "latest.json").read_bytes())
    latest.pop("box_check_ms", None)
    assert "box_check" not in report.performance_tables(latest, None)  # older runs: none
    latest["box_check_ms"] = {"shared": 131.0, "dedicated": 190.4, "end": 129.6}
    line = report.performance_tables(latest, None).splitlines()[-1]
    assert line.endswith("before shared 131, before dedicated 190, at the end 130."), line
    box = load_script("box_check")
    assert box.box_ms(1) > 0
