"""The long fault-injection suite (``make chaos``): kill -9 on 100k events, a Redis outage,
a Kafka broker restart and a slow consumer.

Each disturbed run is compared exactly with a clean run of the same events under another
topic set and Redis prefix. Outages use private services (``PrivateStack``): the shared
stack that other tests use is never paused or stopped.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import pytest

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.patches.watchdogs import WATCHDOG_INTERVAL_S, WATCHDOG_STRIKES
from tests.chaos.test_short import chaos_settings
from tests.support.chaos import (
    check_checkpoints,
    committed_total,
    compare,
    note,
    outcome,
    past,
    prepare,
    produce,
    say,
    sibling,
    workload,
)
from tests.support.chaos_run import (
    PrivateStack,
    drain,
    rss_kb,
    run_clean,
    run_with_kills,
    wait_until,
)
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(900)
async def test_kill9_three_times_during_100k_events(settings: Settings, tmp_path: Path) -> None:
    chaos = chaos_settings(settings)
    clean = sibling(chaos, "clean")
    records = workload(users=1080, seed=71, bots=6)  # 101,500 events (generator of db8294e)
    assert len(records) >= 100_000
    await prepare([chaos, clean], records)
    rng = random.Random(int(os.environ.get("SHOPSTREAM_CHAOS_SEED", "71")))
    kills, _ = await asyncio.gather(
        run_with_kills(chaos, len(records), tmp_path / "chaos.log", 3, rng, timeout_s=780),
        run_clean(clean, len(records), tmp_path / "clean.log", timeout_s=780),
    )
    line = compare(await outcome(clean), await outcome(chaos), len(records), models_exact=True,
                   interrupted_ms=[ms for _, _, ms in kills])  # fmt: skip
    checked = sum(n for _, n, _ in kills)
    say(
        f"kill -9 x{len(kills)} at committed {[c for c, _, _ in kills]}: {line}; "
        f"checkpoint offsets checked after each kill: {checked}, ahead of durable state: 0"
    )


@pytest.mark.timeout(600)
async def test_redis_paused_20s_mid_stream(
    settings: Settings, private_stack: PrivateStack, tmp_path: Path
) -> None:
    private_stack.run("redis-up")
    chaos = chaos_settings(settings).with_(redis_url=private_stack.redis_url)
    clean = sibling(chaos_settings(settings), "clean")
    records = workload(users=175, seed=72)
    await prepare([chaos, clean], records)
    total = len(records)

    async def disturbed() -> tuple[float, int]:
        with WorkerProcess(chaos, tmp_path / "chaos.log") as worker:
            await asyncio.to_thread(worker.wait_healthy)
            await wait_until("a quarter processed", lambda: past(chaos, total // 4), 240, 0.2)
            pid = private_stack.redis_pid()
            os.kill(pid, signal.SIGSTOP)
            started = time.monotonic()
            try:
                before = await committed_total(chaos)
                await asyncio.sleep(20)
                assert worker.alive(), f"worker died during the Redis outage:\n{worker.logs()}"
                during = await committed_total(chaos) - before
            finally:
                os.kill(pid, signal.SIGCONT)
            outage = time.monotonic() - started
            note(f"redis pid {pid} paused {outage:.1f}s; records committed meanwhile: {during}")
            await drain(chaos, total, worker, timeout_s=300)
            logs = worker.log_path.read_text(errors="replace")
        retries = logs.count("; retrying in ")
        assert retries > 0, "no retry was logged during the outage"
        assert "recovered after" in logs, "no recovery was logged"
        return outage, retries

    (outage, retries), _ = await asyncio.gather(
        disturbed(), run_clean(clean, total, tmp_path / "clean.log", timeout_s=400)
    )
    line = compare(await outcome(clean), await outcome(chaos), total, models_exact=True)
    say(f"redis paused {outage:.0f}s mid-stream, {retries} retries logged, no crash: {line}")


@pytest.mark.timeout(600)
async def test_kafka_broker_restart_mid_stream(
    settings: Settings, private_stack: PrivateStack, tmp_path: Path
) -> None:
    private_stack.run("kafka-up")
    chaos = chaos_settings(settings).with_(kafka_bootstrap=private_stack.kafka_bootstrap)
    clean = sibling(chaos_settings(settings), "clean")
    records = workload(users=175, seed=73)
    await prepare([chaos, clean], records)
    total = len(records)

    async def disturbed() -> tuple[float, int]:
        with WorkerProcess(chaos, tmp_path / "chaos.log") as worker:
            await asyncio.to_thread(worker.wait_healthy)
            pid = worker.proc.pid if worker.proc else -1
            await wait_until("a quarter processed", lambda: past(chaos, total // 4), 240, 0.2)
            at = await committed_total(chaos)
            started = time.monotonic()
            await asyncio.to_thread(private_stack.run, "kafka-down")
            # longer than the commit watchdog's strikes (3 x 5 s): an outage is not a commit
            # stall, and seeking back would cut the later batches elsewhere than a clean run
            await asyncio.sleep(WATCHDOG_STRIKES * WATCHDOG_INTERVAL_S + 5)
            assert worker.alive(), f"worker exited while the broker was down:\n{worker.logs()}"
            await asyncio.to_thread(private_stack.run, "kafka-up")
            down = time.monotonic() - started
            note(f"broker restarted at {at}/{total} committed; unavailable {down:.1f}s")
            await drain(chaos, total, worker, timeout_s=300)
            assert worker.proc is not None and worker.proc.pid == pid, "worker was restarted"
        return down, at

    (down, at), _ = await asyncio.gather(
        disturbed(), run_clean(clean, total, tmp_path / "clean.log", timeout_s=400)
    )
    line = compare(await outcome(clean), await outcome(chaos), total, models_exact=True)
    say(f"broker down {down:.0f}s at {at}/{total} committed, same worker pid resumed: {line}")


@pytest.mark.timeout(600)
async def test_slow_consumer_memory_bounded_and_lag_drains(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(partitions=2)
    await ensure_topics(settings)
    records = workload(users=350, seed=74)
    total = len(records)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        await asyncio.to_thread(worker.wait_healthy)
        assert worker.proc is not None
        pid = worker.proc.pid
        baseline = rss_kb(pid)
        samples: list[int] = []
        lags: list[int] = []
        produced = 0
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                samples.append(rss_kb(pid))
                c = await committed_total(settings)
                if c >= 0:
                    lags.append(produced - c)
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        for i in range(0, total, 5000):  # as fast as the producer goes, in a few chunks
            chunk = records[i : i + 5000]
            await produce(settings.kafka_bootstrap, settings.topic_events, list(chunk))
            produced += len(chunk)
        produce_s = time.monotonic() - started
        await drain(settings, total, worker, timeout_s=400)
        drain_s = time.monotonic() - started
        stop.set()
        await sampler
    peak, max_lag = max(samples), max(lags)
    assert max_lag >= total // 3, f"the backlog never built up (max lag {max_lag})"
    bound = baseline + 300 * 1024
    assert peak <= bound, f"RSS grew to {peak // 1024} MB (baseline {baseline // 1024} MB)"
    say(
        f"{total} events produced in {produce_s:.1f}s, processed in {drain_s:.1f}s: max lag "
        f"{max_lag}, lag drained to 0; worker RSS baseline {baseline // 1024} MB, peak "
        f"{peak // 1024} MB over {len(samples)} samples (bound {bound // 1024} MB)"
    )


@pytest.mark.timeout(400)
async def test_checkpoint_not_ahead_when_worker_dies_during_a_broker_freeze(
    settings: Settings, private_stack: PrivateStack, tmp_path: Path
) -> None:
    """The worker crashes while its writes to Kafka are not yet acknowledged.

    The private broker is frozen (SIGSTOP) while the worker goes on processing the records
    it already fetched; then the worker is SIGKILLed and the broker too (so requests parked
    in its socket buffers are never applied), and the broker is started again on its data.
    A model checkpoint may only claim offsets whose effects reached Kafka: the committed
    offset or the profile changelog. Otherwise the restarted worker treats those records as
    fresh and the models learn them a second time (docs/reliability.md: checkpoints
    record the offsets they include).
    """
    private_stack.run("kafka-up")
    chaos = chaos_settings(settings).with_(kafka_bootstrap=private_stack.kafka_bootstrap)
    records = workload(users=120, seed=75)
    await prepare([chaos], records)
    with WorkerProcess(chaos, tmp_path / "chaos.log") as worker:
        await asyncio.to_thread(worker.wait_healthy)
        await wait_until("2000 processed", lambda: past(chaos, 2000), 240, 0.2)
        broker = private_stack.kafka_pid()
        os.kill(broker, signal.SIGSTOP)
        try:
            mark = len(worker.log_path.read_bytes())
            await asyncio.sleep(5)  # checkpoints are due every second
            written = worker.log_path.read_bytes()[mark:].count(b"checkpoint written")
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait(10)
        finally:
            os.kill(broker, signal.SIGKILL)  # our private broker, by its pid
            os.kill(broker, signal.SIGCONT)
    note(f"checkpoints written while the broker was frozen: {written}")
    await asyncio.to_thread(private_stack.run, "kafka-up")
    n_ckpt, n_off = await check_checkpoints(chaos)
    say(
        f"worker killed during a broker freeze ({written} checkpoints written meanwhile): "
        f"{n_ckpt} checkpoints, {n_off} offsets checked, ahead of durable state: 0"
    )
