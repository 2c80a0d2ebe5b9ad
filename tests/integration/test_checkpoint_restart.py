"""A restart resumes the models from the signed checkpoint: progressive metrics go on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from models.bundle import ModelSet
from models.checkpoint import latest_valid
from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from streams.worker.configs import anomaly_config, segment_config
from tests.support.worker import WorkerProcess, committed, produce, secret

KEY = secret("checkpoint-restart")


async def drain(settings: Settings, worker: WorkerProcess, n: int) -> None:
    for _ in range(240):
        if await committed(settings) >= n:
            return
        assert worker.alive(), worker.logs()
        await asyncio.sleep(0.5)
    raise AssertionError(f"worker did not catch up:\n{worker.logs()}")


async def test_restart_resumes_models_from_the_checkpoint(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(checkpoint_key=KEY, checkpoint_interval_s=3600.0)
    events, _ = generate(users=150, seed=5, days=120)
    half = len(events) // 2
    records = [(e["user_id"].encode(), orjson.dumps(e)) for e in events]
    await ensure_topics(settings)

    with WorkerProcess(settings, tmp_path / "w1.log") as worker:
        worker.wait_healthy()
        await produce(settings, records[:half])
        await drain(settings, worker, half)
        before = worker.get_json("/models")
    # SIGTERM (by the context manager) writes a final checkpoint.
    configs = segment_config(settings), anomaly_config(settings)
    found = latest_valid(Path(settings.data_dir) / "checkpoints", KEY.encode(),
                         decode=lambda state: ModelSet.from_dict(state, *configs))  # fmt: skip
    assert found is not None, "no checkpoint written at shutdown"
    models, meta, _ = found
    learned = models.labels_learned
    assert learned == before["churn"]["n_learned"] > 0
    offsets = meta["offsets"]
    assert sum(o + 1 for o in offsets.values()) <= await committed(settings)  # not ahead

    with WorkerProcess(settings, tmp_path / "w2.log") as worker:
        worker.wait_healthy()
        assert worker.get_json("/models")["churn"]["n_learned"] == learned  # restored, not 0
        assert "models restored from" in worker.log_path.read_text()  # whole log, not the tail
        await produce(settings, records[half:])
        await drain(settings, worker, len(records))
        after = worker.get_json("/models")["churn"]
        assert after["n_learned"] > learned and after["auc"] is not None
        print(
            f"verified: {learned} labels before the restart, {after['n_learned']} after; "
            f"progressive AUC {before['churn']['auc']} -> {after['auc']}"
        )


async def test_a_clean_stop_hands_the_models_to_the_next_worker(
    settings: Settings, tmp_path: Path
) -> None:
    """Scaling in: the stopping worker stores its partitions' models in Redis (Faust sends
    no revocation while stopping), so a worker with no checkpoint of its own takes them."""
    settings = settings.with_(checkpoint_key=KEY, checkpoint_interval_s=3600.0)
    events, _ = generate(users=120, seed=8, days=100)
    records = [(e["user_id"].encode(), orjson.dumps(e)) for e in events]
    await ensure_topics(settings)

    with WorkerProcess(settings, tmp_path / "w1.log") as worker:
        worker.wait_healthy()
        await produce(settings, records)
        await drain(settings, worker, len(records))
        before = worker.get_json("/models")
    assert before["churn"]["n_learned"] > 0

    elsewhere = settings.with_(data_dir=str(tmp_path / "other-worker"))  # no checkpoint there
    with WorkerProcess(elsewhere, tmp_path / "w2.log") as worker:
        worker.wait_healthy()
        await produce(settings, records[:1])  # a batch: the worker settles its models first
        await drain(settings, worker, len(records) + 1)
        after = worker.get_json("/models")
        log = worker.full_log()
    assert "took over the models" in log, log[-3000:]
    assert after["partitions"].keys() == before["partitions"].keys()
    assert after["churn"]["n_learned"] >= before["churn"]["n_learned"]
    print(
        f"verified: {before['churn']['n_learned']} labels handed over at the stop, "
        f"{after['churn']['n_learned']} after the next worker's first batch"
    )
