"""make bench: the full worker against the raw aiokafka ceiling, on the local stack, one run.

Steps (every figure is measured here, none is typed in):

1. ``shopstream generate`` writes the event file (cached in ``.stack/bench``); its first part
   is preloaded into a fresh input topic, the rest feeds the latency run.
2. **ceiling**: a raw aiokafka consume → orjson decode → orjson encode → produce loop drains
   the preloaded topic into a scratch topic (its own consumer group).
3. **pipeline**: the real worker process (all agents, real Redis) starts on the same
   preloaded topic; its consumer group's committed offsets are sampled every 0.5 s (the lag
   curve) together with its RSS (``/proc/PID/status``); events/s = events drained between the
   first commit and lag 0, divided by that time (start-up and rebalancing are excluded).
4. **latency**: the rest of the file is replayed open-loop at half the measured pipeline rate;
   each recommendation's ``trigger_event_id`` is matched to the send time of its input event,
   and latency = the output record's Kafka timestamp - that send time.
5. memory: Redis ``MEMORY USAGE`` of sampled keys per key kind (see models/similarity/store.py),
   per item and per user; the serialized profile size per user, read back from the profile
   table's changelog topic.

Writes ``bench/results/latest.json`` and ``bench/results/latest.png``; with ``--profile``,
py-spy samples the worker during the drain and during the latency run
(``.stack/bench/profile-*.folded``, collapsed stacks for flame graph tools) and
``bench/results/profile.txt`` summarises both.
Everything it creates (topics, Redis keys, the worker) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from models.similarity import delete_prefix, key_base
from streams.core.settings import PREFIX, Settings
from streams.kafka import client_options, ensure_topics
from streams.tools.replay import replay

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".stack" / "bench"
RESULTS = ROOT / "bench" / "results"


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


@dataclass
class Sample:
    t: float  # seconds since the worker was started
    committed: int
    end: int
    rss_mb: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # cumulative CPU seconds per process


@dataclass
class Run:
    settings: Settings
    ceiling_topic: str
    samples: list[Sample] = field(default_factory=list)
    phase_marks: dict[str, float] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    first_batches: dict[str, float] | None = None  # /metrics batch counters at the first commit


# --- helpers -------------------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment with ``settings`` as its only ``SHOPSTREAM_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return env | settings.to_env()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def service_pids(s: Settings) -> dict[str, int]:
    """The pids of redis-server (INFO) and of the Kafka broker (scripts/stack.sh pid file)."""
    pids: dict[str, int] = {}
    client = aioredis.from_url(s.redis_url)
    try:
        pids["redis"] = int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()
    stack_dir = Path(os.environ.get("SHOPSTREAM_STACK_DIR") or ROOT / ".stack")  # as stack.sh
    pidfile = stack_dir / "kafka" / "kafka.pid"
    if pidfile.exists():
        pids["kafka"] = int(pidfile.read_text().strip())
    return pids


def cpu_util(samples: list[Sample], first: Sample, last: Sample) -> dict[str, float]:
    secs = last.t - first.t
    return {
        name: round((last.cpu_s[name] - first.cpu_s.get(name, 0.0)) / secs, 2)
        for name in last.cpu_s
        if secs > 0
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gb = round(int(first.split()[1]) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        pass
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    jars = sorted((Path.home() / ".cache" / "shopstream").rglob("kafka_2.13-*.jar"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": jars[-1].stem.replace("kafka_2.13-", "") if jars else "unknown",
        "redis": redis_version.split(" v=")[-1].split(" ")[0] if redis_version else "unknown",
        "note": "Kafka, Redis, the load generator and the worker share this machine",
        # other work on the box skews every figure: the 1-minute load average when measured
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


# --- phases --------------------------------------------------------------------------------


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


def scrape_batches(port: int) -> dict[str, float]:
    """Batch counters of the worker's ``/metrics`` now (see :func:`batch_counters`)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return batch_counters(resp.read().decode())


def batch_counters(text: str) -> dict[str, float]:
    """Batches, events, seconds inside batches (in total and per stage) and messages out by
    topic, from the Prometheus text of the worker's ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {"batches": 0.0, "busy_s": 0.0, "events": 0.0, "at": time.monotonic()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "shopstream_batches_total":
                out["batches"] = value
            elif name == "shopstream_batch_processing_seconds_sum":
                out["busy_s"] = value
            elif name == "shopstream_events_in_total":
                out["events"] += value
            elif name == "shopstream_batch_stage_seconds_total":
                out["stage:" + labels["stage"]] = value
            elif name == "shopstream_messages_out_total":
                out["out:" + labels["topic"]] = value
    return out


def batch_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean batch size and processing time between two scrapes, and the share of wall time
    the worker spent inside batch processing (the rest: Faust, fetching, waiting)."""
    batches = max(after["batches"] - before["batches"], 1.0)
    busy = after["busy_s"] - before["busy_s"]
    wall = max(after["at"] - before["at"], 1e-9)
    stages = {
        key[6:]: round(1000 * (after[key] - before.get(key, 0.0)) / batches, 2)
        for key in after
        if key.startswith("stage:")
    }
    outputs = {
        key[4:]: round((after[key] - before.get(key, 0.0)) / batches, 1)
        for key in after
        if key.startswith("out:")
    }
    return {
        "batches": int(after["batches"] - before["batches"]),
        "outputs_per_batch": outputs,
        "events_per_batch": round((after["events"] - before["events"]) / batches, 1),
        "ms_per_batch": round(1000 * busy / batches, 2),
        "share_in_batches": round(busy / wall, 3),
        "ms_per_batch_by_stage": stages,
    }


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**client_options(settings))
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def ceiling(settings: Settings, out_topic: str, total: int) -> dict[str, float]:
    """Raw loop: consume the events topic, decode each value, re-encode, produce."""
    consumer = AIOKafkaConsumer(
        settings.topic_events,
        **client_options(settings),
        group_id=f"{settings.app_id}-ceiling",
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
    cpu = {name: cpu_seconds(p) for name, p in {"worker": pid, **run.pids}.items()}
    sample = Sample(time.monotonic() - t0, committed, end, rss_mb(pid), cpu)
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
    raise SystemExit(f"worker did not drain within {limit_s}s (last sample {run.samples[-1]})")


def pipeline_rate(samples: list[Sample], until: Sample) -> dict[str, Any]:
    started = next(s for s in samples if s.committed > 0)
    secs = until.t - started.t
    events = until.committed - started.committed
    if secs <= 0:
        return {"events": events, "seconds": 0.0, "eps": float("nan")}
    return {"events": events, "seconds": round(secs, 3), "eps": round(events / secs, 1)}


async def latency_run(
    s: Settings, path: Path, rate: float, seconds: float, sent: dict[str, float]
) -> dict[str, Any]:
    """Fixed-rate open-loop replay; records the send time of every event id in ``sent``."""

    def on_send(value: bytes, at: float) -> None:
        sent[orjson.loads(value)["event_id"]] = at

    summary = await replay(
        s, path, rate=rate, limit=max(1, int(rate * seconds)), on_send=on_send, linger_ms=0
    )
    return summary.as_dict()


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


GLOBAL_KINDS = {"n", "pop", "cat", "meta", "off"}  # per item (n) or one key per store


async def redis_memory(s: Settings, users_hint: int) -> dict[str, Any]:
    """MEMORY USAGE of sampled keys per kind, scaled by the key counts."""
    client = aioredis.from_url(s.redis_url)
    base = key_base(s.redis_prefix)
    kinds: dict[str, list[bytes]] = {}
    try:
        async for key in client.scan_iter(match=base.replace("{", "\\{").replace("}", "\\}") + "*",
                                          count=2000):  # fmt: skip
            rest = key[len(base) :].decode(errors="replace")
            kind = rest.split(":", 1)[0] if ":" in rest else rest
            kinds.setdefault(kind, []).append(key)
        by_kind: dict[str, dict[str, float]] = {}
        for kind, keys in sorted(kinds.items()):
            sample = keys[:: max(1, len(keys) // 400)][:400]
            sizes = [int(await client.memory_usage(k, samples=0) or 0) for k in sample]
            mean = statistics.fmean(sizes) if sizes else 0.0
            by_kind[kind] = {
                "keys": len(keys),
                "mean_bytes": round(mean, 1),
                "est_total_mb": round(mean * len(keys) / 2**20, 2),
            }
    finally:
        await client.aclose()

    def total(*names: str) -> float:
        return sum(by_kind.get(n, {}).get("est_total_mb", 0.0) for n in names) * 2**20

    items = int(by_kind.get("n", {}).get("keys", 0))
    users = int(by_kind.get("us", {}).get("keys", 0)) or users_hint
    return {
        "keys_by_kind": by_kind,
        "items": items,
        "users": users,
        "bytes_per_item": round(total("n") / items, 1) if items else None,
        # every kind that is not per item or global is per user (sessions, purchases, ...)
        "bytes_per_user": round(total(*(set(by_kind) - GLOBAL_KINDS)) / users, 1)
        if users
        else None,
        "total_mb": round(total(*by_kind) / 2**20, 2),
    }


async def profile_sizes(s: Settings) -> dict[str, Any]:
    """Serialized profile size per user: the last value per key of the table's changelog."""
    topic = f"{s.app_id}-profiles-changelog"
    consumer = AIOKafkaConsumer(**client_options(s), enable_auto_commit=False)
    await consumer.start()
    last: dict[bytes, int] = {}
    try:
        parts = [TopicPartition(topic, p) for p in range(s.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + 120
        behind = [tp for tp in parts if ends[tp] > 0]
        while behind and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for rec in records:
                    if rec.key is not None and rec.value is not None:
                        last[rec.key] = len(rec.value)
            behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
    finally:
        await consumer.stop()
    sizes = list(last.values())
    return {
        "users": len(sizes),
        "mean_bytes": round(statistics.fmean(sizes), 1) if sizes else None,
        "p95_bytes": percentile([float(x) for x in sizes], 95) if sizes else None,
        "max_bytes": max(sizes) if sizes else None,
        "target_bytes": 2048,
    }


async def cleanup(s: Settings, extra_topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [t for t in existing if t.startswith((s.app_id, f"{s.redis_prefix}."))]
        mine += [t for t in (s.topic_events, *s.output_topics, *extra_topics) if t in existing]
        if mine:
            await admin.delete_topics(sorted(set(mine)))
    finally:
        await admin.close()
    client = aioredis.from_url(s.redis_url)
    try:
        await delete_prefix(client, key_base(s.redis_prefix))
    finally:
        await client.aclose()


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
           "mode/threads.py", "threading.py", "streams/__main__", "streams/cli.py")  # fmt: skip


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


# --- chart ---------------------------------------------------------------------------------


def chart(run: Run, ceiling_eps: float, lat: list[tuple[float, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax3) = plt.subplots(2, 1, figsize=(10, 7.5))
    smp = run.samples
    # offsets are committed about once a second: rate over a 2 s sliding window
    win = 4
    ts = [smp[i].t for i in range(win, len(smp))]
    rates = [
        (smp[i].committed - smp[i - win].committed) / (smp[i].t - smp[i - win].t)
        for i in range(win, len(smp))
    ]
    ax1.plot(ts, rates, color="tab:blue", label="pipeline events/s (committed)")
    ax1.axhline(ceiling_eps, color="tab:green", linestyle="--", label="raw aiokafka ceiling")
    ax1.set_xlabel("seconds since worker start")
    ax1.set_ylabel("events/s")
    ax2 = ax1.twinx()
    ax2.plot([x.t for x in smp], [x.end - x.committed for x in smp], color="tab:red",
             label="consumer lag")  # fmt: skip
    ax2.set_ylabel("lag (events)")
    for i, (name, t) in enumerate(run.phase_marks.items()):
        ax1.axvline(t, color="grey", linewidth=0.8)
        ax1.text(t, ax1.get_ylim()[1] * (0.6 - 0.1 * i), f" {name}", fontsize=8, color="grey")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    ax1.set_title("throughput and lag (preloaded drain, then fixed-rate latency run)")
    if lat:
        t0 = lat[0][0]
        ax3.scatter([a - t0 for a, _ in lat], [d * 1000 for _, d in lat], s=2, alpha=0.4,
                    label="recommendation latency")  # fmt: skip
        window = max(1, len(lat) // 40)
        xs, p99 = [], []
        for i in range(0, len(lat) - window + 1, window):
            chunk = [d * 1000 for _, d in lat[i : i + window]]
            xs.append(lat[i + window // 2][0] - t0)
            p99.append(percentile(chunk, 99))
        ax3.plot(xs, p99, color="tab:red", label="rolling p99")
        ax3.set_yscale("log")
    ax3.set_xlabel("seconds since latency run start")
    ax3.set_ylabel("produce → output (ms)")
    ax3.legend(loc="upper right", fontsize=8)
    ax3.set_title("end-to-end latency at half the measured maximum rate")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


# --- main ----------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    pre, rest, n_pre = prepare_events(args.users, args.seed, args.events)
    tag = uuid.uuid4().hex[:8]
    s = Settings.from_env().namespaced(f"bench{tag}").with_(
        web_port=free_port(),
        data_dir=str(WORK / tag / "worker"),
        partitions=args.partitions,
        # the file is produced in seconds: a per-user limit in record time would refuse the
        # heavy users' events (docs/security.md, "Rate limit")
        max_events_per_min=0,
    )
    run = Run(settings=s, ceiling_topic=f"bench{tag}.ceiling")
    result: dict[str, Any] = {"run_id": tag}
    proc: subprocess.Popen[bytes] | None = None
    try:
        await ensure_topics(s)
        await ensure_topics(s.with_(topic_events=run.ceiling_topic))
        say(f"preloading {n_pre} events into {s.topic_events} ({s.partitions} partitions)")
        loaded = await replay(s, pre)
        if loaded.send_errors or loaded.events != n_pre:
            raise SystemExit(f"preload failed: {loaded.as_dict()}")
        result["preload"] = loaded.as_dict()

        say("ceiling: raw aiokafka consume -> orjson decode -> produce")
        result["ceiling"] = await ceiling(s, run.ceiling_topic, n_pre)
        say(f"ceiling: {result['ceiling']['eps']:,.0f} events/s")

        say("pipeline: starting the worker on the preloaded topic")
        cmd = [sys.executable, "-m", "streams", "worker"]
        log_path = WORK / tag / "worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, env=settings_env(s), stdout=log, stderr=log)  # noqa: ASYNC220
        t0 = time.monotonic()
        spies: list[subprocess.Popen[bytes] | None] = []
        run.pids = await service_pids(s)
        admin = AIOKafkaAdminClient(**client_options(s))
        await admin.start()
        try:
            pid = proc.pid

            def first_commit() -> None:
                spies.append(start_spy(args, pid, "drain"))
                run.first_batches = scrape_batches(s.web_port)

            done = await drain(
                run,
                pid,
                t0,
                admin,
                args.timeout,
                first_commit,
            )
            rate = pipeline_rate(run.samples, done)
            drained = scrape_batches(s.web_port)
            rate["batches"] = batch_stats(run.first_batches or drained, drained)
            first = next(x for x in run.samples if x.committed > 0)
            rate["cpu_cores_used"] = cpu_util(run.samples, first, done)
            result["pipeline"] = rate
            say(f"pipeline: {rate['eps']:,.0f} events/s over {rate['seconds']}s")
            run.phase_marks["drained"] = done.t
            for spy in spies:
                stop_spy(spy)
            spies = [start_spy(args, pid, "live")]

            lat_rate = max(50.0, rate["eps"] * args.latency_fraction)
            say(f"latency: fixed rate {lat_rate:,.0f} events/s for {args.latency_seconds}s")
            run.phase_marks["latency run"] = time.monotonic() - t0
            rec_start = await end_offsets(s, s.topic_recommendations)
            sent_at: dict[str, float] = {}
            sampler = asyncio.create_task(_sample_forever(run, proc.pid, t0, admin))
            live_first, own_cpu = len(run.samples), time.process_time()
            try:
                sent = await latency_run(s, rest, lat_rate, args.latency_seconds, sent_at)
            finally:
                sampler.cancel()
            # CPU shares while the load is offered: the load generator (this process) shares
            # the two cores with the worker, Kafka and Redis.
            live_cpu = cpu_util(run.samples, run.samples[live_first], run.samples[-1])
            live_cpu["load_generator"] = round(
                (time.process_time() - own_cpu) / max(sent["seconds"], 1e-9), 2
            )
            await drain(run, proc.pid, t0, admin, limit_s=60)
            live_batches = batch_stats(drained, scrape_batches(s.web_port))
            for spy in spies:
                stop_spy(spy)
            if args.profile:
                write_profile_summary(args.out.with_name("profile.txt"))
            await asyncio.sleep(1.0)  # outputs of the last batch
            lat = await match_latencies(s, rec_start, sent_at)
        finally:
            await admin.close()
        ms = [d * 1000 for _, d in lat]
        result["latency"] = {
            "rate_eps": round(lat_rate, 1),
            "replay": sent,
            "recommendations_matched": len(ms),
            "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1),
            "max_ms": round(max(ms), 1) if ms else None,
            "batches": live_batches,
            "cpu_cores_used": live_cpu,
        }
        say(f"latency: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")
        result["rss_mb_max"] = round(max(x.rss_mb for x in run.samples), 1)
        result["rss_mb_end"] = round(run.samples[-1].rss_mb, 1)
        result["redis"] = await redis_memory(s, args.users)
        result["profiles"] = await profile_sizes(s)
        result["lag_curve"] = [
            [round(x.t, 2), x.end - x.committed, round(x.rss_mb, 1)] for x in run.samples
        ]
        result["chart"] = args.out.with_suffix(".png").name
        chart(run, result["ceiling"]["eps"], lat, args.out.with_suffix(".png"))
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if not args.keep:
            await cleanup(s, [run.ceiling_topic])
    return result


async def _sample_forever(run: Run, pid: int, t0: float, admin: AIOKafkaAdminClient) -> None:
    while True:
        await sample_lag(run, pid, t0, admin)
        await asyncio.sleep(0.5)


def markdown(latest: dict[str, Any]) -> str:
    """The README's performance table, from a ``latest.json`` (no number typed by hand)."""
    m = latest["machine"]
    live = latest.get("detail", {}).get("latency", {}).get("cpu_cores_used", {})
    rows = [
        ("raw aiokafka ceiling (consume → decode → produce)",
         f"{latest['ceiling_eps']:,.0f} events/s"),
        ("full pipeline, one worker process", f"{latest['pipeline_eps']:,.0f} events/s"),
        ("pipeline / ceiling", f"{latest['ratio']:.0%}"),
        (f"end-to-end latency at {latest['latency_rate_eps']:,.0f} events/s (p50 / p95 / p99)",
         f"{latest['p50_ms']:,.0f} / {latest['p95_ms']:,.0f} / {latest['p99_ms']:,.0f} ms"),
        ("worker CPU per event while draining",
         f"{latest.get('worker_cpu_us_per_event', 0):,.0f} µs"),
        ("CPU cores used in the latency run: worker / load generator / Kafka / Redis",
         " / ".join(f"{live.get(k, float('nan')):.2f}"
                    for k in ("worker", "load_generator", "kafka", "redis"))),
        ("worker RSS (max)", f"{latest['rss_mb']:.0f} MB"),
        ("Redis memory per item / per user", f"{latest['redis_bytes_per_item']:,.0f} B / "
         f"{latest['redis_bytes_per_user']:,.0f} B"),
        ("serialized profile per user (mean)", f"{latest['profile_bytes_per_user']:,.0f} B"),
    ]  # fmt: skip
    lines = ["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    lines.append(
        f"\nMeasured by `make bench` on {latest['measured_at'][:10]}: {latest['events']:,} events, "
        f"{latest['partitions']} partitions; {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"Python {m['python']}, Kafka {m['kafka']}, Redis {m['redis']}; {m['note']} "
        f"(load average {m.get('loadavg_1m', '?')} at the end of the run)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=800, help="users to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=100_000, help="events to preload")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="pipeline drain limit")
    parser.add_argument("--profile", action="store_true", help="sample the worker with py-spy")
    parser.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--latency-fraction", type=float, default=0.5, help="latency-run rate / pipeline max"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the README table of --out and exit"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(orjson.loads(args.out.read_bytes())))
        return

    subprocess.run([str(ROOT / "scripts/stack.sh"), "up"], check=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    detail = asyncio.run(bench(args))
    ceiling_eps = detail["ceiling"]["eps"]
    pipeline_eps = detail["pipeline"]["eps"]
    latest = {
        "ceiling_eps": ceiling_eps,
        "pipeline_eps": pipeline_eps,
        "ratio": round(pipeline_eps / ceiling_eps, 3),
        "p50_ms": detail["latency"]["p50_ms"],
        "p95_ms": detail["latency"]["p95_ms"],
        "p99_ms": detail["latency"]["p99_ms"],
        "latency_rate_eps": detail["latency"]["rate_eps"],
        "rss_mb": detail["rss_mb_max"],
        "worker_cpu_us_per_event": round(
            1e6 * detail["pipeline"]["cpu_cores_used"]["worker"] * detail["pipeline"]["seconds"]
            / max(detail["pipeline"]["events"], 1)
        ),
        "redis_bytes_per_item": detail["redis"]["bytes_per_item"],
        "redis_bytes_per_user": detail["redis"]["bytes_per_user"],
        "profile_bytes_per_user": detail["profiles"]["mean_bytes"],
        "events": detail["pipeline"]["events"],
        "partitions": args.partitions,
        "profiled": bool(args.profile),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "bench_seconds": round(time.time() - started, 1),
        "machine": machine(),
        "detail": detail,
    }
    args.out.write_bytes(orjson.dumps(latest, option=orjson.OPT_INDENT_2) + b"\n")
    say(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    summary = {k: v for k, v in latest.items() if k not in {"detail", "machine"}}
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
