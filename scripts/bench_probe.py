"""make bench, part 1: samples and probes (process CPU/RSS, /metrics batch counters, Redis
and profile memory, clean-up); scripts/bench.py runs the phases."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from models.similarity import delete_prefix, key_base
from streams.core.settings import PREFIX, Settings
from streams.kafka import client_options

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


def stat_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from the text of ``/proc/PID/stat``; the command name in
    parentheses may contain spaces and parentheses, so fields are counted after the last ``)``.

    >>> stat_cpu_ticks("42 (my (odd) name) S 1 42 42 0 -1 4194304 9 0 0 0 150 25 0 0 20 0")
    175
    """
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat``); 0 if it is gone."""
    try:
        return stat_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children_of() -> dict[int, list[int]]:
    """Each process's children, from the parent ids in ``/proc/*/stat`` (one scan)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    """``pid`` and the processes it started, and theirs: a worker and its forecast process.

    >>> process_tree(1, {1: [5, 7], 7: [9], 3: [4]})
    [1, 7, 9, 5]
    """
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def cpu_us_per_event(first: Sample, last: Sample, events: int) -> dict[str, float]:
    """CPU µs per event of each sampled process between two samples: the scale-free figure
    (it does not depend on how many cores the process got). Processes whose names start
    with ``worker`` are also summed as ``workers`` (several workers in the scale-out run).

    >>> a = Sample(0.0, 0, 0, 0.0, {"worker": 1.0, "worker-2": 0.5, "redis": 2.0})
    >>> b = Sample(9.0, 0, 0, 0.0, {"worker": 1.5, "worker-2": 0.75, "redis": 2.1})
    >>> cpu_us_per_event(a, b, 1000)
    {'redis': 100.0, 'worker': 500.0, 'worker-2': 250.0, 'workers': 750.0}
    """
    if events <= 0:
        return {}
    out = {
        name: round(1e6 * (last.cpu_s[name] - first.cpu_s.get(name, 0.0)) / events, 1)
        for name in sorted(last.cpu_s)
    }
    workers = [v for k, v in out.items() if k.startswith("worker")]
    if workers:
        out["workers"] = round(sum(workers), 1)
    return out


async def redis_persistence(s: Settings) -> dict[str, int]:
    """Redis's persistence counters so far (``INFO``): AOF rewrites, RDB saves, all forks,
    and the AOF's size in bytes. A fork's child copies the whole dataset on the same cores as
    everything else, so a latency run is read beside the forks made during it; the AOF's
    growth per event says how often a shop at that rate would fork."""
    client = aioredis.from_url(s.redis_url)
    try:
        info = {**await client.info("persistence"), **await client.info("stats")}
    finally:
        await client.aclose()
    return {"aof_rewrites": int(info.get("aof_rewrites", 0)),
            "rdb_saves": int(info.get("rdb_saves", 0)),
            "forks": int(info.get("total_forks", 0)),
            "aof_bytes": int(info.get("aof_current_size", 0))}  # fmt: skip


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
            elif name == "shopstream_batch_wait_seconds_sum":
                out["wait_s"] = value
            elif name == "shopstream_batch_wait_seconds_count":
                out["waits"] = value
            elif name == "shopstream_events_in_total":
                out["events"] += value
            elif name == "shopstream_last_batch_timestamp_seconds":
                out["last_batch_at"] = value
            elif name == "shopstream_batch_stage_seconds_total":
                out["stage:" + labels["stage"]] = value
            elif name == "shopstream_batch_stage_wall_seconds_total":
                out["wall:" + labels["stage"]] = value
            elif name == "shopstream_messages_out_total":
                out["out:" + labels["topic"]] = value
    return out


def batch_rate(first: dict[str, float], last: dict[str, float]) -> dict[str, Any] | None:
    """Events/s between the ends of two batches, from two scrapes of the worker's
    ``/metrics`` (its valid-event count and the unix time its last batch ended): the
    events of the batches that ended after the first scrape's last batch, over the time
    from that batch's end to the last one's. No commit or sampling interval inside, unlike
    :func:`pipeline_rate` (offsets are committed once a second, sampled every half second:
    its end is up to 1.5 s late on a drain of ~10 s). None without the timestamps.

    >>> batch_rate({"events": 500.0, "last_batch_at": 100.0},
    ...            {"events": 10500.0, "last_batch_at": 101.25})
    {'events': 10000, 'seconds': 1.25, 'eps': 8000.0}
    """
    if "last_batch_at" not in first or "last_batch_at" not in last:
        return None
    secs, events = last["last_batch_at"] - first["last_batch_at"], last["events"] - first["events"]
    if secs <= 0:
        return None
    return {"events": int(events), "seconds": round(secs, 3), "eps": round(events / secs, 1)}


def batch_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean batch size and processing time between two scrapes, the share of wall time the
    worker spent inside batch processing (the rest: Faust, fetching, waiting), and how long
    the oldest record of a batch had waited when the batch started (``oldest_wait_ms``:
    producer, broker, fetch and the batch before; with the batch's own time, where a
    latency goes)."""
    batches = max(after["batches"] - before["batches"], 1.0)
    busy = after["busy_s"] - before["busy_s"]
    wall = max(after["at"] - before["at"], 1e-9)
    def per_batch_ms(kind: str) -> dict[str, float]:
        return {
            key[len(kind):]: round(1000 * (after[key] - before.get(key, 0.0)) / batches, 2)
            for key in after
            if key.startswith(kind)
        }

    outputs = {
        key[4:]: round((after[key] - before.get(key, 0.0)) / batches, 1)
        for key in after
        if key.startswith("out:")
    }
    waits = after.get("waits", 0.0) - before.get("waits", 0.0)
    waited = after.get("wait_s", 0.0) - before.get("wait_s", 0.0)
    return {
        "batches": int(after["batches"] - before["batches"]),
        "oldest_wait_ms": round(1000 * waited / waits, 2) if waits > 0 else None,
        "outputs_per_batch": outputs,
        "events_per_batch": round((after["events"] - before["events"]) / batches, 1),
        "ms_per_batch": round(1000 * busy / batches, 2),
        "share_in_batches": round(busy / wall, 3),
        "ms_per_batch_by_stage": per_batch_ms("stage:"),
        "wall_ms_per_batch_by_stage": per_batch_ms("wall:"),
    }




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


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**client_options(settings))
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()




# --- CPU placement (the "dedicated" configuration) ------------------------------------------


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@contextmanager
def pinned(pids: dict[str, int], cpus: list[int]) -> Iterator[None]:
    """Every thread of each process (``taskset -a``) on ``cpus`` while inside; the former
    affinity back afterwards (the shared Kafka and Redis of other people's tests too)."""
    saved: dict[int, set[int]] = {}
    cpu_list = ",".join(map(str, cpus))
    try:
        for pid in pids.values():
            try:
                saved[pid] = os.sched_getaffinity(pid)
            except OSError:
                continue
            subprocess.run(["taskset", "-a", "-p", "-c", cpu_list, str(pid)],
                           stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        yield
    finally:
        for pid, was in saved.items():
            subprocess.run(["taskset", "-a", "-p", "-c", ",".join(map(str, sorted(was))),
                            str(pid)], stdout=subprocess.DEVNULL, check=False)  # fmt: skip
