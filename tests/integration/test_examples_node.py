"""examples/node: the Node.js storefront producer against the real worker's collector."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import ADMIN_TOKEN, PUBLIC_KEY, WorkerProcess, consume

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


def run_example(worker: WorkerProcess, key: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"SHOPSTREAM_URL": worker.url(""), "SHOPSTREAM_PUBLIC_KEY": key,
                        "EXAMPLE_RUN": "t1", "EXAMPLE_CUSTOMER": "cust-node"}  # fmt: skip
    assert NODE, "Node.js is needed for examples/node (apt-get install -y nodejs)"
    return subprocess.run([NODE, str(ROOT / "examples/node/collector_producer.mjs")], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


async def test_the_node_example_sends_a_session_and_reads_recommendations(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN)
    await ensure_topics(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        refused = run_example(worker, "")
        proc = run_example(worker, PUBLIC_KEY)
        assert proc.returncode == 0, proc.stderr
        out = orjson.loads(proc.stdout)
        recs = await consume(settings.topic_recommendations, settings,
                             done=lambda rs: any(r.key == b"cust-node" for r in rs))  # fmt: skip
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert (out["accepted"], out["rejected"], out["identified"]) == (6, 1, 1)
    assert out["reasons"] == ["missing_field"] and isinstance(out["recommendations"], list)
    assert any(r.key == b"cust-node" for r in recs)
    # the identify call of the request puts its anonymous events under the customer too
    assert {orjson.loads(r.value)["user_id"] for r in recs} == {"cust-node"}
