"""SHOPSTREAM_LOG_FORMAT=json: every line the worker writes is one JSON object (start,
work, clean stop), and its /metrics has the build info and per-partition lag."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import orjson

from streams.core.settings import Settings
from tests.support.worker import WorkerProcess


def test_worker_logs_are_json_lines(settings: Settings, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    with WorkerProcess(settings.with_(log_format="json"), log_path) as worker:
        worker.wait_healthy()
        with urllib.request.urlopen(worker.url("/metrics"), timeout=5) as resp:
            metrics = resp.read().decode()
        worker.stop()
    assert "shopstream_build_info{" in metrics and "process_resident_memory_bytes" in metrics
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert len(lines) > 5
    bad = [line for line in lines if not _is_json_object(line)]
    assert bad == [], bad[:5]
    levels = {orjson.loads(line)["level"] for line in lines}
    assert "info" in levels


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False
