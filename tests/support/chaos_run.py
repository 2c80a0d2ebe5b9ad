"""Chaos tests, part 2: the worker under faults (kills, waits, drains) and private services.

Part 1, tests/support/chaos.py: workloads, reads of Kafka and Redis, verdicts."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from models.similarity import key_base
from streams.core.settings import Settings
from streams.kafka import committed_offsets
from streams.worker.retry import retry_forever
from tests.support.chaos import ROOT, check_checkpoints, committed_total, note
from tests.support.worker import WorkerProcess, free_port


# --- the worker -------------------------------------------------------------------------
def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], timeout_s: float, every_s: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


async def fences(settings: Settings) -> dict[str, int]:
    """The similarity store's offset fence per source partition: how far processing got."""
    client = aioredis.from_url(settings.redis_url)
    try:
        raw = await retry_forever(  # BUSY while a script paused with redis-server finishes
            "reading the offset fences",
            lambda: client.hgetall(key_base(settings.redis_prefix) + "off"),
        )
    finally:
        await client.aclose()
    return {k.decode(): int(v) for k, v in raw.items()}


async def drain(
    settings: Settings, total: int, worker: WorkerProcess, timeout_s: float, stall_s: float = 90
) -> None:
    """Wait until the worker committed every record of the events topic.

    Fails early when every record was processed (the Redis offset fences reached the end)
    but the committed offsets stay behind for ``stall_s`` seconds: a commit that is stuck.
    """
    stalled_since: float | None = None

    async def done() -> bool:
        nonlocal stalled_since
        assert worker.alive(), f"worker died:\n{worker.logs()}"
        committed = await committed_total(settings)
        if committed >= total:
            return True
        processed = sum(off + 1 for off in (await fences(settings)).values())
        if processed >= total:
            stalled_since = stalled_since or time.monotonic()
            assert time.monotonic() - stalled_since < stall_s, (
                f"all {total} records processed (Redis fences {await fences(settings)}) but "
                f"committed offsets stuck at {await committed_offsets(settings)} for "
                f"{stall_s:.0f}s (commit interval {settings.commit_interval_s}s)"
            )
        return False

    try:
        await wait_until(f"{total} committed records", done, timeout_s)
    except AssertionError as exc:
        if "stuck" in str(exc) or "died" in str(exc):
            raise
        raise AssertionError(f"{exc}: {await progress(settings, total, worker)}") from None
    log = worker.full_log()  # the whole run: every restart appends to the same file
    assert "records skipped by the consumer" not in log, worker.logs()
    note(f"commit stalls repaired by the watchdog: {log.count('offset commits stalled')}")


async def progress(settings: Settings, total: int, worker: WorkerProcess) -> str:
    """Where a drain stands, for assertion messages: commits, Redis fences, the worker log."""
    try:
        committed: object = await committed_offsets(settings)
    except Exception as exc:  # a report, never raises
        committed = f"unreadable ({exc!r})"
    return (
        f"committed {committed} of {total} records, Redis offset fences "
        f"{await fences(settings)}; end of the worker log:\n"
        f"{await asyncio.to_thread(worker.stuck_report)}"
    )


async def run_clean(settings: Settings, total: int, log: Path, timeout_s: float) -> None:
    with WorkerProcess(settings, log) as worker:
        await asyncio.to_thread(worker.wait_healthy)
        await drain(settings, total, worker, timeout_s)


async def run_with_kills(
    settings: Settings, total: int, log: Path, kills: int, rng: random.Random, timeout_s: float
) -> list[tuple[int, int, int]]:
    """Run the worker, SIGKILL it ``kills`` times at random points of the drain.

    Returns (committed at kill, checkpoint offsets checked, wall time of the kill in ms) per
    kill.
    """
    points = sorted(rng.uniform(0.1, 0.85) * total for _ in range(kills))
    report = []
    deadline = time.monotonic() + timeout_s
    for point in points:
        worker = WorkerProcess(settings, log).start()
        try:
            await asyncio.to_thread(worker.wait_healthy)
            while (c := await committed_total(settings)) < point:
                assert worker.alive(), f"worker died:\n{worker.logs()}"
                assert time.monotonic() < deadline, (
                    f"kill -9 run did not reach {point:.0f} committed records in time: "
                    f"{await progress(settings, total, worker)}"
                )
                await asyncio.sleep(0.2)
            await asyncio.sleep(rng.uniform(0.0, 1.0))  # somewhere inside a batch
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGKILL)
            killed_ms = round(time.time() * 1000)
            worker.proc.wait(10)
        finally:
            worker.stop()
        n_ckpt, n_off = await check_checkpoints(settings)
        note(f"SIGKILL at ~{c}/{total} committed ({killed_ms} ms); {n_ckpt} checkpoints, "
             "none ahead")  # fmt: skip
        report.append((c, n_off, killed_ms))
    worker = WorkerProcess(settings, log).start()
    try:
        await asyncio.to_thread(worker.wait_healthy)
        await drain(settings, total, worker, max(60.0, deadline - time.monotonic()))
    finally:
        worker.stop()
    await check_checkpoints(settings)
    return report


# --- private services (scripts/stack.sh with a private STACK_DIR and ports) -------------
class PrivateStack:
    """A redis-server and/or Kafka broker of our own, safe to pause, stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.redis_port = free_port()
        self.kafka_port = free_port()
        self.env = {
            **os.environ,
            "SHOPSTREAM_STACK_DIR": str(directory),
            "SHOPSTREAM_REDIS_PORT": str(self.redis_port),
            "SHOPSTREAM_KAFKA_PORT": str(self.kafka_port),
            "SHOPSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
            "SHOPSTREAM_KAFKA_SASL_PORT": str(free_port()),
            "SHOPSTREAM_KAFKA_HEAP": "-Xms128m -Xmx512m",
        }

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def run(self, action: str, timeout: float = 180) -> None:
        proc = subprocess.run(
            [str(ROOT / "scripts/stack.sh"), action],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"stack.sh {action}: {proc.stdout}\n{proc.stderr}"

    def redis_pid(self) -> int:
        return int((self.dir / "redis/redis.pid").read_text().strip())

    def kafka_pid(self) -> int:
        return int((self.dir / "kafka/kafka.pid").read_text().strip())

    def stop_all(self) -> None:
        for action, pidfile in (
            ("kafka-down", "kafka/kafka.pid"),
            ("redis-down", "redis/redis.pid"),
        ):
            if (self.dir / pidfile).exists():
                if action == "redis-down":
                    try:
                        os.kill(self.redis_pid(), signal.SIGCONT)  # never leave it paused
                    except OSError:
                        pass
                self.run(action)
