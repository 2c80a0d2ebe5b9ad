"""SHOPSTREAM_TABLE_STORE=rocksdb: the profile table lives in RocksDB files in the data dir
(faust-streaming's rocksdb:// store through rocksdict), survives a restart, and retention
removes from it like from the memory store."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, produce

T0 = 1_709_283_600_000
DAY = 86_400_000


def event(n: int, user: str, day: float) -> bytes:
    return orjson.dumps({"event_id": f"{user}-{n}", "type": "view", "user_id": user,
                         "session_id": f"{user}-s", "item_id": f"i{n % 4}",
                         "ts": T0 + int(day * DAY)})  # fmt: skip


def wait_for(check: object, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.3)
    return False


def status(worker: WorkerProcess, user: str) -> int:
    try:
        worker.get_json(f"/users/{user}")
    except OSError as exc:
        return 404 if "404" in str(exc) else 0
    return 200


async def test_rocksdb_table_store_persists_and_applies_retention(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.with_(table_store="rocksdb", partitions=1, retention_days=40.0,
                       retention_interval_s=0.5)  # fmt: skip
    await ensure_topics(s)
    with WorkerProcess(s, tmp_path / "w1.log") as worker:
        worker.wait_healthy()
        await produce(s, [(b"r1", event(i, "r1", 0.1 * i)) for i in range(3)])
        await produce(s, [(b"r2", event(i, "r2", 0.1 * i)) for i in range(3)])
        assert wait_for(lambda: status(worker, "r2") == 200), worker.logs()
        worker.stop()
    stores = list(Path(s.data_dir).rglob("*profiles*"))
    assert stores, f"no RocksDB files under {s.data_dir}"
    with WorkerProcess(s, tmp_path / "w2.log") as worker:
        worker.wait_healthy()
        assert worker.get_json("/users/r1")["user_id"] == "r1"  # read back after a restart
        deadline = time.monotonic() + 60
        for n in range(3, 200):  # r2 comes back 60 days later: the clock moves, r1 expires
            await produce(s, [(b"r2", event(n, "r2", 60))])
            if status(worker, "r1") == 404 or time.monotonic() > deadline:
                break
            time.sleep(0.7)
        assert status(worker, "r1") == 404, worker.logs()
        assert status(worker, "r2") == 200
        worker.stop()
