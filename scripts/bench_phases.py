"""make bench, part 2: the measured phases (events file, raw aiokafka ceiling, the drain, the
open-loop latency run, py-spy profiles); scripts/bench.py puts them together."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from bench_probe import (
    ROOT,
    WORK,
    Run,
    Sample,
    children_of,
    cpu_seconds,
    end_offsets,
    process_tree,
    rss_mb,
    say,
)

from streams.core.settings import Settings
from streams.kafka import client_options


def prepare_events(users: int, seed: int, preload_n: int) -> tuple[Path, Path, int]:
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / f"events-u{users}-s{seed}.jsonl"
    if not src.exists():
        say(f"generating {users} users (seed {seed}) -> {src}")
        subprocess.run(
            [str(ROOT / ".venv/bin/shopstream"), "generate", "--users", str(users),
             "--seed", str(seed), "--out", str(src)],
            check=True,
        )  # fmt: skip
    lines = src.read_bytes().splitlines(keepends=True)
    n = min(preload_n, len(lines) * 3 // 4)
    pre, rest = WORK / "preload.jsonl", WORK / "latency.jsonl"
    pre.write_bytes(b"".join(lines[:n]))
    rest.write_bytes(b"".join(lines[n:]))
    return pre, rest, n




async def ceiling(
    settings: Settings, out_topic: str, total: int, group: str = "ceiling"
) -> dict[str, float]:
    """Raw loop: consume the events topic, decode each value, re-encode, produce (consumer
    group ``<app id>-<group>``: each group reads the topic from its start)."""
    consumer = AIOKafkaConsumer(
        settings.topic_events,
        **client_options(settings),
        group_id=f"{settings.app_id}-{group}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_poll_records=settings.max_poll_records,
    )
    # Same producer settings as the worker (streams/app.py): linger, batch size, acks=all.
    producer = AIOKafkaProducer(
        **client_options(settings),
        linger_ms=settings.producer_linger_ms,
        max_batch_size=settings.producer_max_batch_bytes,
        acks="all",
    )
    await consumer.start()
    await producer.start()
    seen = 0
    first: float | None = None
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=settings.max_poll_records)
            pending = []
            for records in batch.values():
                for rec in records:
                    obj = orjson.loads(rec.value)
                    pending.append(await producer.send(out_topic, orjson.dumps(obj), key=rec.key))
            if pending:
                first = first or time.perf_counter()
                await asyncio.gather(*pending)
                seen += len(pending)
        await producer.flush()
        done = time.perf_counter()
    finally:
        await consumer.stop()
        await producer.stop()
    # The first poll includes the group join; time from the first batch received.
    secs = done - (first or done)
    return {"events": seen, "seconds": round(secs, 3), "eps": round(seen / secs, 1)}


async def sample_lag(run: Run, pid: int, t0: float, admin: AIOKafkaAdminClient) -> Sample:
    s = run.settings
    offsets = await admin.list_consumer_group_offsets(s.app_id)
    committed = sum(
        max(0, meta.offset) for tp, meta in offsets.items() if tp.topic == s.topic_events
    )
    end = sum((await end_offsets(s, s.topic_events)).values())
    # a worker with its child processes (the forecasts run in one): one scan of /proc
    children = children_of()
    trees = {name: process_tree(p, children) if name.startswith("worker") else [p]
             for name, p in {"worker": pid, **run.pids}.items()}  # fmt: skip
    cpu = {name: sum(cpu_seconds(p) for p in tree) for name, tree in trees.items()}
    # of which its child processes (the forecasts): a per-day job, apart from the batches
    cpu |= {f"children:{name}": sum(cpu_seconds(p) for p in tree[1:])
            for name, tree in trees.items() if name.startswith("worker")}  # fmt: skip
    rss = rss_mb(pid) and sum(rss_mb(p) for p in trees["worker"])  # 0: the worker is gone
    sample = Sample(time.monotonic() - t0, committed, end, rss, cpu)
    run.samples.append(sample)
    return sample


async def drain(
    run: Run,
    pid: int,
    t0: float,
    admin: AIOKafkaAdminClient,
    limit_s: float,
    on_progress: Callable[[], None] | None = None,
) -> Sample:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if rss_mb(pid) == 0.0:  # gone, or a zombie (no VmRSS)
            raise SystemExit(f"the worker (pid {pid}) exited; see its log in {WORK}")
        sample = await sample_lag(run, pid, t0, admin)
        if on_progress is not None and sample.committed > 0:
            on_progress()
            on_progress = None
        if sample.end and sample.committed >= sample.end:
            return sample
        await asyncio.sleep(0.5)
    last = run.samples[-1]
    raise SystemExit(f"did not drain within {limit_s:.0f} s (committed {last.committed:,} of "
                     f"{last.end:,} events)")  # fmt: skip


def pipeline_rate(samples: list[Sample], until: Sample) -> dict[str, Any]:
    started = next(s for s in samples if s.committed > 0)
    secs = until.t - started.t
    events = until.committed - started.committed
    if secs <= 0:
        return {"events": events, "seconds": 0.0, "eps": float("nan")}
    return {"events": events, "seconds": round(secs, 3), "eps": round(events / secs, 1)}


async def latency_run(
    s: Settings,
    path: Path,
    rate: float,
    seconds: float,
    sent: dict[str, float],
    env: dict[str, str],
    cpus: list[int] | None = None,
) -> dict[str, Any]:
    """Open-loop at ``rate`` by scripts/bench_loadgen.py in its own process (on ``cpus`` if
    given), for ``seconds`` (``path`` played again if it holds fewer events); records the
    send time of every event id in ``sent`` and returns the generator's summary (its CPU
    included)."""
    cmd = [sys.executable, str(ROOT / "scripts/bench_loadgen.py"), str(path),
           "--topic", s.topic_events, "--partitions", str(s.partitions),
           "--rate", str(rate), "--limit", str(max(1, int(rate * seconds)))]  # fmt: skip
    if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"the load generator failed ({proc.returncode})")
    summary: dict[str, Any] = orjson.loads(out)
    sent.update((event_id, at) for event_id, at in summary.pop("sent"))
    return summary


async def match_latencies(
    s: Settings, start: dict[int, int], sent: dict[str, float]
) -> list[tuple[float, float]]:
    consumer = AIOKafkaConsumer(**client_options(s), enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[float, float]] = []
    try:
        parts = [TopicPartition(s.topic_recommendations, p) for p in range(s.partitions)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, start.get(tp.partition, 0))
        remaining = {tp: ends[tp] for tp in parts if ends[tp] > start.get(tp.partition, 0)}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for rec in records:
                    trigger = orjson.loads(rec.value).get("trigger_event_id")
                    if trigger in sent:
                        out.append((sent[trigger], rec.timestamp / 1000 - sent[trigger]))
                    if rec.offset + 1 >= remaining.get(tp, 0):
                        remaining.pop(tp, None)
    finally:
        await consumer.stop()
    return sorted(out)


# --- profiling (py-spy, out of process: the worker runs unmodified) -------------------------


def start_spy(args: argparse.Namespace, pid: int, phase: str) -> subprocess.Popen[bytes] | None:
    if not args.profile:
        return None
    out = WORK / f"profile-{phase}.folded"  # MBs: kept out of bench/results
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(pid), "--rate", "250",
         "--idle", "--threads", "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)


GENERIC = ("<frozen", "asyncio/", "selectors.py", "typer/", "runpy", "mode/worker.py",
           "mode/threads.py", "threading.py", "streams/__main__", "streams/cli/")  # fmt: skip


def fold_summary(path: Path, top: int = 25) -> list[str]:
    """Per thread: share of samples idle (waiting in epoll) and per function (py-spy raw)."""
    threads: dict[str, tuple[Counter[str], Counter[str], list[int]]] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith("thread") else "thread"
        names = [f.rsplit(":", 1)[0] + ")" for f in frames if f.endswith(")") and ":" in f]
        inclusive, own, total = threads.setdefault(thread, (Counter(), Counter(), [0]))
        n = int(count)
        total[0] += n
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
    lines = [f"{path.name} (py-spy --idle --nonblocking, 250 samples/s per thread)"]
    for thread, (inclusive, own, total) in sorted(threads.items(), key=lambda t: -t[1][2][0]):
        n = total[0]
        idle = sum(c for f, c in own.items() if "select" in f or "poll" in f)
        lines.append(f"{thread}: {n} samples, {100 * idle / n:.1f}% idle (waiting for I/O)")
        lines.append("  inclusive  function")
        useful = [(f, c) for f, c in inclusive.most_common() if not any(g in f for g in GENERIC)]
        lines += [f"  {100 * c / n:8.1f}%  {f}" for f, c in useful[:top]]
        lines.append("  self       function")
        lines += [f"  {100 * c / n:8.1f}%  {f}" for f, c in own.most_common(top // 2)]
        lines.append("")
    return lines


def write_profile_summary(out: Path) -> None:
    lines: list[str] = []
    for phase in ("drain", "live"):
        folded = WORK / f"profile-{phase}.folded"
        if folded.exists():
            lines += [*fold_summary(folded), ""]
    out.write_text("\n".join(lines))


