"""make bench, part 4: worker processes, the Faust no-op peer, one configuration's drain and
latency run, and the scale-out drain; scripts/bench.py puts them together.

Configurations: *shared* leaves every process where the kernel puts it (the two cores are
shared by the worker, Kafka, Redis and the load generator); *dedicated* pins the worker to the
last core and everything else — the load generator, this script, and (``taskset -a``, undone
afterwards) Kafka and Redis — to the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from bench_phases import (
    drain,
    latency_run,
    match_latencies,
    pipeline_rate,
    sample_lag,
    start_spy,
    stop_spy,
    write_profile_summary,
)
from bench_probe import (
    ROOT,
    WORK,
    Run,
    batch_rate,
    batch_stats,
    cores,
    cpu_us_per_event,
    cpu_util,
    end_offsets,
    free_port,
    percentile,
    pinned,
    redis_persistence,
    say,
    scrape_batches,
    service_pids,
    settings_env,
)

from streams.core.settings import Settings
from streams.kafka import client_options, group_members

SETTLE_S = 3.0  # after the group is stable: the workers' (empty) recovery and first fetch


def bench_env(settings: Settings) -> dict[str, str]:
    """The child's environment: ``settings`` and this checkout first on the import path."""
    env = settings_env(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_workers(
    s: Settings, n: int, cpus: list[int] | None = None
) -> list[subprocess.Popen[bytes]]:
    """``n`` worker processes of one consumer group (own web port and data dir each)."""
    procs = []
    for i in range(n):
        si = s if i == 0 else s.with_(web_port=free_port(), data_dir=f"{s.data_dir}-{i + 1}")
        cmd = [sys.executable, "-m", "streams", "worker"]
        if cpus:
            cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
        log_path = Path(s.data_dir).parent / f"worker-{i + 1}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            procs.append(subprocess.Popen(cmd, env=bench_env(si), stdout=log, stderr=log,
                                          cwd=ROOT))  # fmt: skip
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def faust_noop(s: Settings, events: int, limit_s: float) -> dict[str, Any]:
    """The stock Faust no-op agent (scripts/bench_noop.py) on the preloaded topic."""
    out = WORK / f"noop-{s.app_id}.json"
    out.unlink(missing_ok=True)
    (WORK / "noop").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSTREAM_")} | {
        "BENCH_NOOP_APP": f"{s.app_id}-noop",
        "BENCH_NOOP_TOPIC": s.topic_events,
        "BENCH_NOOP_BROKER": f"kafka://{s.kafka_bootstrap}",
        "BENCH_NOOP_DIR": str(WORK / "noop" / s.app_id),
        "BENCH_NOOP_EXPECT": str(events),
        "BENCH_NOOP_OUT": str(out),
    }
    with (WORK / "noop.log").open("ab") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
            [sys.executable, str(ROOT / "scripts/bench_noop.py"), "worker", "-l", "warn"],
            env=env, stdout=log, stderr=log, cwd=ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + limit_s
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Faust no-op agent did not finish; see {WORK}/noop.log")
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.2)  # the file is written in one call; let it land
        return dict(orjson.loads(out.read_bytes()))
    finally:
        stop([proc])


async def configuration(
    s: Settings, args: argparse.Namespace, rest: Path, dedicated: bool
) -> tuple[dict[str, Any], Run, list[tuple[float, float]]]:
    """Drain the preloaded topic with one worker, then the open-loop latency run."""
    all_cpus = cores()
    worker_cpus = all_cpus[-1:] if dedicated and len(all_cpus) > 1 else None
    other_cpus = all_cpus[:-1] if worker_cpus else None
    run = Run(settings=s, ceiling_topic="")
    services = await service_pids(s)
    run.pids = dict(services)
    place: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if other_cpus:
        place = pinned({"bench": os.getpid(), **(services if args.pin_services else {})},
                       other_cpus)  # fmt: skip
    with place:
        procs = start_workers(s, 1, worker_cpus)
        try:
            return await _drain_and_offer(s, args, rest, run, procs[0].pid, other_cpus)
        finally:
            stop(procs)


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n")


async def _drain_and_offer(
    s: Settings,
    args: argparse.Namespace,
    rest: Path,
    run: Run,
    pid: int,
    loadgen_cpus: list[int] | None,
) -> tuple[dict[str, Any], Run, list[tuple[float, float]]]:
    t0 = time.monotonic()
    spies: list[subprocess.Popen[bytes] | None] = []
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:

        def first_commit() -> None:
            spies.append(start_spy(args, pid, "drain"))
            run.first_batches = scrape_batches(s.web_port)

        done = await drain(run, pid, t0, admin, args.timeout, first_commit)
        drained = scrape_batches(s.web_port)
        # events/s between batch ends (exact), the committed-offset figure kept beside it
        committed = pipeline_rate(run.samples, done)
        rate = batch_rate(run.first_batches or drained, drained) or dict(committed)
        rate["committed"] = committed
        rate["batches"] = batch_stats(run.first_batches or drained, drained)
        first = next(x for x in run.samples if x.committed > 0)
        rate["cpu_cores_used"] = cpu_util(run.samples, first, done)
        rate["cpu_us_per_event"] = cpu_us_per_event(first, done, rate["events"])
        worker_us = rate["cpu_us_per_event"].get("worker", 0)
        child_us = rate["cpu_us_per_event"].get("children:worker", 0)
        say(f"pipeline: {rate['eps']:,.0f} events/s over {rate['seconds']}s, "
            f"{worker_us:,.0f} µs of worker CPU per event ({child_us:,.0f} of them in its "
            "forecast process)")  # fmt: skip
        run.phase_marks["drained"] = done.t
        for spy in spies:
            stop_spy(spy)
        spies = [start_spy(args, pid, "live")]

        lat_rate = args.latency_rate or max(50.0, rate["eps"] * args.latency_fraction)
        offered = max(1, int(lat_rate * args.latency_seconds))
        passes = offered / lines_in(rest)
        say(f"latency: fixed rate {lat_rate:,.0f} events/s for {args.latency_seconds:.0f} s: "
            f"{offered:,} events ({passes:.1f} passes of {rest.name})")  # fmt: skip
        run.phase_marks["latency run"] = time.monotonic() - t0
        rec_start = await end_offsets(s, s.topic_recommendations)
        sent_at: dict[str, float] = {}
        sampler = asyncio.create_task(_sample_forever(run, pid, t0, admin))
        live_first = len(run.samples)
        persisted = await redis_persistence(s)
        try:
            await asyncio.sleep(0.6)  # a sample before the first event
            sent = await latency_run(s, rest, lat_rate, args.latency_seconds, sent_at,
                                     bench_env(s), loadgen_cpus)  # fmt: skip
        finally:
            sampler.cancel()
        persistence: dict[str, int | None] = {
            k: v - persisted[k] for k, v in (await redis_persistence(s)).items()
        }
        if persistence["aof_rewrites"]:  # a rewrite restarts the file: its growth is unknown
            persistence["aof_bytes"] = None
        live_cpu = cpu_util(run.samples, run.samples[live_first], run.samples[-1])
        live_cpu["load_generator"] = round(sent["cpu_s"] / max(sent["seconds"], 1e-9), 2)
        await drain(run, pid, t0, admin, limit_s=60)
        live_batches = batch_stats(drained, scrape_batches(s.web_port))
        for spy in spies:
            stop_spy(spy)
        if args.profile:
            write_profile_summary(args.out.with_name("profile.txt"))
        await asyncio.sleep(1.0)  # outputs of the last batch
        lat = await match_latencies(s, rec_start, sent_at)
        # [unix send time, latency ms] of every matched recommendation, beside the worker's
        # log (its slow-batch lines) and Redis's, to line a hump up with its cause
        samples = Path(s.data_dir).parent / "latency-samples.json"
        samples.write_bytes(orjson.dumps([[round(t, 4), round(d * 1000, 2)] for t, d in lat]))
    finally:
        await admin.close()
    ms = [d * 1000 for _, d in lat]
    rate["latency"] = {
        "rate_eps": round(lat_rate, 1),
        "replay": sent,
        "recommendations_matched": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "batches": live_batches,
        "cpu_cores_used": live_cpu,
        "redis_persistence": persistence,  # during the run; AOF bytes: its growth
    }
    say(
        f"latency: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms "
        f"({persistence['aof_rewrites']} AOF rewrites of Redis during the run)"
    )
    rate["rss_mb_max"] = round(max(x.rss_mb for x in run.samples), 1)
    rate["rss_mb_end"] = round(run.samples[-1].rss_mb, 1)
    rate["lag_curve"] = [
        [round(x.t, 2), x.end - x.committed, round(x.rss_mb, 1)] for x in run.samples
    ]
    return rate, run, lat


async def _sample_forever(run: Run, pid: int, t0: float, admin: AIOKafkaAdminClient) -> None:
    while True:
        await sample_lag(run, pid, t0, admin)
        await asyncio.sleep(0.5)


async def scale_out_drain(
    s: Settings, n: int, limit_s: float, load: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """``n`` workers of one group join on the empty topic; once the group is stable with all
    ``n`` (and ``SETTLE_S`` more for their recovery), ``load`` fills the topic (it returns
    :func:`bench.preload`'s summary) and they drain it: events/s and CPU per event of all of
    them, without the start-up rebalances (workers started on a full topic let the first one
    to join process for seconds, then rebalance, recover and redo the uncommitted part
    inside the measured span)."""
    run = Run(settings=s, ceiling_topic="")
    run.pids = await service_pids(s)
    procs = start_workers(s, n)
    for i, proc in enumerate(procs[1:], start=2):
        run.pids[f"worker-{i}"] = proc.pid
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        deadline = time.monotonic() + limit_s
        while await group_members(s, stable=True) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{n} workers did not form a stable group in {limit_s:.0f} s")
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a worker exited before the group formed; see {WORK}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(SETTLE_S)
        loaded = await load()
        done = await drain(run, procs[0].pid, time.monotonic(), admin, limit_s)
    finally:
        await admin.close()
        stop(procs)
    rate = pipeline_rate(run.samples, done)
    first = next(x for x in run.samples if x.committed > 0)
    rate["cpu_us_per_event"] = cpu_us_per_event(first, done, rate["events"])
    rate["workers"], rate["loaded"] = n, loaded["events"]
    return rate
