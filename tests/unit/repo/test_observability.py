"""deploy/: the alert rules pass ``promtool check rules`` (Debian's prometheus package,
installed by scripts/install.sh: a missing promtool FAILS this test), and every metric the
rules and the Grafana dashboard use exists in a real worker registry's /metrics; the
registry has the process/platform collectors and the build info; JSON log lines."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.core.build import package_version
from streams.logs import JsonFormatter
from streams.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/shopstream.json"
#: Prometheus' own series (not in any /metrics): the scrape's health.
SYNTHETIC = {"up"}
NAME = re.compile(r"\b((?:shopstream|process|python)_[a-z0-9_]+|up)\b")


def exposed_names() -> set[str]:
    """Sample names of a real Telemetry registry that has seen one of everything."""
    t = Telemetry()
    t.on_batch(3, 0.01, {"view": 3}, kafka_timestamps=[1.0])
    t.on_dlq("not_json")
    t.on_stages({"validate": 0.001}, {"validate": 0.002})
    t.on_recommendations(1)
    t.on_alert({"alert_id": "a", "user_id": "u"})
    t.on_anomaly({"kind": "bot"})
    t.on_segment({"segment": "loyal", "previous": None})
    t.on_skipped_records(0)
    t.on_redis_retry()
    t.on_redis_error()
    t.on_commit_stall()
    t.set_partition_lags({("shop.events", 0): 5, ("shop.events", 1): 2})
    t.set_model_quality(0.7, 0.5)
    names = set()
    for family in text_string_to_metric_families(t.render().decode()):
        names.update(sample.name for sample in family.samples)
    return names


def test_registry_has_process_platform_build_and_partition_lag() -> None:
    t = Telemetry()
    t.set_partition_lags({("shop.events", 0): 5, ("shop.events", 3): 7})
    text = t.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "process_resident_memory_bytes" in families and "python_info" in families
    assert "python_gc_objects_collected" in families
    (build,) = families["shopstream_build_info"].samples
    assert build.labels["version"] == package_version() and build.value == 1
    lags = {s.labels["partition"]: s.value for s in families["shopstream_partition_lag"].samples}
    assert lags == {"0": 5, "3": 7}
    assert families["shopstream_consumer_lag"].samples[0].value == 12


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/install.sh installs Debian's prometheus"
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rules_cover_what_an_operator_must_know() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    exprs = " ".join(r["expr"] for r in rules)
    for metric in ("shopstream_partition_lag", "shopstream_dlq_total", "shopstream_redis_errors",
                   "shopstream_skipped_records", "shopstream_commit_stalls",
                   "shopstream_model_auc"):  # fmt: skip
        assert metric in exprs, metric
    assert "by (reason)" in exprs


def test_every_metric_in_rules_and_dashboard_is_exposed_by_the_worker() -> None:
    exposed = exposed_names() | SYNTHETIC
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [r["expr"] for r in rules] + [
        t["expr"] for p in dashboard["panels"] for t in p["targets"]
    ]
    used = {m for e in exprs for m in NAME.findall(e)}
    assert used - exposed == set(), f"not in /metrics: {sorted(used - exposed)}"
    assert len(used) >= 15


def test_json_log_lines_are_one_object_each() -> None:
    fmt = JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        rec = logging.LogRecord("streams.w", logging.ERROR, "f", 1, "failed %s", ("x",),
                                sys.exc_info())  # fmt: skip
    line = fmt.format(rec)
    assert "\n" not in line
    obj = orjson.loads(line)
    assert obj["message"] == "failed x" and obj["level"] == "error"
    assert "ValueError: boom" in obj["exc"]
