"""make soak: a long generated history through a real worker, memory sampled as it goes.

A rolling population: every event-time day new customers arrive, each visits every other
day for ``--active-days`` and then never again; the catalogue rolls too (a new block of
items every 10 days, each block sold for 30 days). With retention on, the worker's table,
its churn tracks and the Redis keys hold only recent customers and items, so worker RSS and
Redis memory level off once the history is longer than the retention period; with
``--no-retention`` they grow with the history.

The worker runs against the shared Kafka (own topics) and a private redis-server started
here on a free port (so ``used_memory`` is this run's alone), stopped by its pid at the end.
Bounded in time: the input is paced (``--rate`` events/s) and the run stops after
``--max-minutes`` whatever happens. Writes ``bench/results/soak[-no-retention].json``.

    .venv/bin/python scripts/soak.py [--days 540] [--rate 900] [--no-retention]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_probe import rss_mb  # noqa: E402  (the script's folder is on sys.path)

from streams.core.settings import Settings  # noqa: E402
from streams.kafka import client_options, ensure_topics  # noqa: E402
from tests.support.worker import free_port, settings_env  # noqa: E402

T0 = 1_704_067_200_000  # 2024-01-01
DAY = 86_400_000


def history(days: int, per_day: int, active_days: int, seed: int) -> list[dict[str, Any]]:
    """Events in event-time order: visits of 4 events (3 views, maybe a purchase)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    n = 0
    for day in range(days):
        block = day // 10
        for cohort in range(max(0, day - active_days + 1), day + 1):
            if (day - cohort) % 2:
                continue
            for u in range(per_day):
                user = f"c{cohort}-{u}"
                session = f"{user}-d{day}"
                base = T0 + day * DAY + rng.randrange(DAY - 600_000)
                for k in range(4):
                    item = f"i{rng.choice((block, block - 1, block - 2))}-{rng.randrange(40)}"
                    kind = "purchase" if k == 3 and rng.random() < 0.3 else "view"
                    n += 1
                    out.append({"event_id": f"e{n}", "type": kind, "user_id": user,
                                "session_id": session, "item_id": item, "category": "c",
                                "price": 20.0, "ts": base + k * 30_000})  # fmt: skip
    out.sort(key=lambda e: e["ts"])
    return out


def metric(port: int, name: str) -> float | None:
    """The sum of the samples of ``name`` in the worker's /metrics (None if unreachable)."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == name]  # fmt: skip
    return float(sum(values)) if values else None


def key_kinds(r: redis.Redis) -> dict[str, int]:
    """Keys per kind (``{prefix}:n:...`` -> ``n``)."""
    kinds: dict[str, int] = {}
    for key in r.scan_iter(count=1000):
        rest = key.decode(errors="replace").split("}:", 1)[-1]
        kind = rest.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
        except redis.ConnectionError:
            time.sleep(0.1)
        else:
            return proc, port
    proc.kill()
    raise SystemExit("private redis-server did not start")


def start_worker(s: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen([sys.executable, "-m", "streams", "worker"], cwd=ROOT,
                            env=settings_env(s), stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


async def produce(s: Settings, events: list[dict[str, Any]], rate: float, stop_at: float,
                  progress: dict[str, int]) -> None:  # fmt: skip
    producer = AIOKafkaProducer(**client_options(s), linger_ms=5, acks=1)
    await producer.start()
    try:
        start = time.perf_counter()
        for i, e in enumerate(events):
            if time.monotonic() > stop_at:
                break
            if (ahead := start + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(ahead)
            await producer.send(s.topic_events, orjson.dumps(e), key=e["user_id"].encode())
            progress["sent"], progress["ts"] = i + 1, e["ts"]
        await producer.flush()
    finally:
        await producer.stop()


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    events = history(args.days, args.users_per_day, args.active_days, args.seed)
    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix=f"soak{tag}-"))
    redis_proc, redis_port = start_redis(work)
    retention = not args.no_retention
    s = Settings.from_env().namespaced(f"soak{tag}").with_(
        redis_url=f"redis://127.0.0.1:{redis_port}/0", web_port=free_port(),
        data_dir=str(work / "worker"), partitions=2, log_level="warning",
        retention_days=args.retention_days if retention else 0.0,
        rec_item_ttl_days=args.retention_days if retention else 0.0,
        retention_interval_s=2.0, rec_half_life_days=args.half_life_days,
    )  # fmt: skip
    samples: list[dict[str, Any]] = []
    final_kinds: dict[str, int] = {}
    worker: subprocess.Popen[bytes] | None = None
    stop_at = time.monotonic() + args.max_minutes * 60
    try:
        await ensure_topics(s)
        worker = start_worker(s, work / "worker.log")
        while metric(s.web_port, "shopstream_batches_total") is None:
            if worker.poll() is not None or time.monotonic() > stop_at:
                raise SystemExit(f"worker did not start; see {work / 'worker.log'}")
            await asyncio.sleep(0.5)
        progress = {"sent": 0, "ts": T0}
        sender = asyncio.create_task(produce(s, events, args.rate, stop_at, progress))
        r = redis.Redis(port=redis_port)
        started = time.monotonic()
        while True:
            done = sender.done()
            info = r.info("memory")
            processed = int(metric(s.web_port, "shopstream_events_in_total") or 0)
            last = events[min(processed, len(events)) - 1] if processed else None
            day = (last["ts"] - T0) / DAY if last else 0.0  # redeliveries count twice
            samples.append({
                "t_s": round(time.monotonic() - started, 1),
                "event_day": round(day, 1),  # of the last event the worker processed
                "events_sent": progress["sent"],
                "events_processed": processed,
                "worker_rss_mb": round(rss_mb(worker.pid), 1),
                "redis_used_mb": round(info["used_memory"] / 2**20, 2),
                "redis_keys": r.dbsize(),
                "profiles": metric(s.web_port, "shopstream_profiles"),
                "lag": metric(s.web_port, "shopstream_consumer_lag"),
            })  # fmt: skip
            print(samples[-1], flush=True)
            if (done and processed >= progress["sent"]) or time.monotonic() > stop_at:
                break  # everything sent and processed, or out of time
            await asyncio.sleep(args.sample_s)
        await sender
        final_kinds = key_kinds(r)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        redis_proc.terminate()
        redis_proc.wait(30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "run_id": tag, "retention": retention, "args": vars(args), "events": len(events),
        "days": args.days, "samples": samples, "summary": summarise(samples),
        "redis_keys_by_kind_at_end": final_kinds,
    }  # fmt: skip


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Memory at each quarter of the run: flat means the last quarters match."""
    out: dict[str, Any] = {}
    n = len(samples)
    for q in (1, 2, 3, 4):
        row = samples[min(n - 1, max(0, q * n // 4 - 1))]
        out[f"q{q}"] = {k: row[k] for k in ("event_day", "worker_rss_mb", "redis_used_mb",
                                             "redis_keys", "profiles")}  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=540, help="event-time days of history")
    p.add_argument("--users-per-day", type=int, default=10, help="new customers per day")
    p.add_argument("--active-days", type=int, default=20, help="days a customer stays")
    p.add_argument("--retention-days", type=float, default=45.0)
    p.add_argument("--half-life-days", type=float, default=7.0,
                   help="of the item counts: an item of count c is evicted after "
                        "retention + half-life * log2(c) days unseen")  # fmt: skip
    p.add_argument("--no-retention", action="store_true", help="control run: keep everything")
    p.add_argument("--rate", type=float, default=900.0, help="events/s sent")
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--max-minutes", type=float, default=9.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the work dir (worker log)")
    args = p.parse_args()
    os.environ.setdefault("SHOPSTREAM_LOG_LEVEL", "warning")
    result = asyncio.run(soak(args))
    name = "soak-no-retention.json" if args.no_retention else "soak.json"
    out = ROOT / "bench" / "results" / name
    out.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(orjson.dumps(result["summary"], option=orjson.OPT_INDENT_2).decode())
    print(f"written to {out}")


if __name__ == "__main__":
    main()
