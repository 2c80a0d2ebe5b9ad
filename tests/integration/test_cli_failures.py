"""The worker started with Kafka up but Redis unreachable: one line, exit 3 (no traceback,
no endless retry at start; an outage once running is waited out, see tests/chaos)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams.core.settings import Settings
from tests.support.worker import free_port, settings_env

ROOT = Path(__file__).resolve().parents[2]


def test_worker_with_redis_down_is_one_line(settings: Settings, tmp_path: Path) -> None:
    s = settings.with_(redis_url=f"redis://:pw@127.0.0.1:{free_port()}/0", log_level="warning")
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "worker"], cwd=ROOT, env=settings_env(s),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("shopstream: cannot reach Redis at 127.0.0.1:"), lines
    assert ":pw@" not in lines[0]  # the password is never printed
