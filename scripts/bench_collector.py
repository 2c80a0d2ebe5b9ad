"""Load test of the collector (``POST /v1/events``): events/s and the HTTP call's latency.

Starts one worker (its own topics and Redis prefix, the public key set, the per-client rate
limit off: every request comes from 127.0.0.1), then, for each phase, ``--clients``
concurrent HTTP clients post generated contract events for ``--seconds``: batches of
``--batch`` events (a backend), then single events (a browser's beacon). Reports accepted
events/s and the p50/p95/p99 of the request, checks that the events topic holds exactly the
accepted events, and writes ``bench/results/collector.json``. ``make bench`` runs it after
the pipeline benchmark.

    .venv/bin/python scripts/bench_collector.py [--clients 4] [--batch 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams.core.settings import PREFIX, Settings  # noqa: E402
from streams.kafka import client_options, ensure_topics  # noqa: E402
from streams.tools.generate import generate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KEY = "bench-public-key-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], within_s: float = 120) -> None:
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the worker exited with {proc.returncode}")
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit("the worker did not become healthy")


async def phase(url: str, events: list[dict[str, Any]], clients: int, batch: int,
                seconds: float) -> dict[str, Any]:  # fmt: skip
    """``clients`` posting ``batch`` events per request until the time is up."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    latencies: list[float] = []
    accepted = errors = 0
    cursor = 0
    stop = time.perf_counter() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal accepted, errors, cursor
        while time.perf_counter() < stop:
            # the events again under new ids once all were sent (the worker drops repeats)
            rnd, at = divmod(cursor, len(events))
            chunk = events[at : at + batch]
            cursor += len(chunk)
            body = orjson.dumps([e | {"event_id": f"{e['event_id']}-{rnd}"} for e in chunk])
            t = time.perf_counter()
            async with http.post(url + "/v1/events", data=body, headers=headers) as resp:
                answer = await resp.json()
            latencies.append((time.perf_counter() - t) * 1000)
            accepted += answer.get("accepted", 0)
            errors += resp.status != 200

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "clients": clients, "batch": batch, "requests": len(latencies), "accepted": accepted,
        "errors": errors, "seconds": round(elapsed, 2),
        "events_per_s": round(accepted / elapsed, 1),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
    }  # fmt: skip


async def topic_count(settings: Settings) -> int:
    """Records on the events topic (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(settings.topic_events, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tag = "bc" + uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=os.environ.get(PREFIX + "KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        redis_url=os.environ.get(PREFIX + "REDIS_URL", "redis://127.0.0.1:6379/0"),
        web_port=free_port(), data_dir=str(ROOT / ".stack" / tag), public_key=KEY,
        collector_events_per_s=0, collector_max_events=max(500, args.batch),
    ).namespaced(tag)  # fmt: skip
    await ensure_topics(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)} | settings.to_env()
    (ROOT / ".stack").mkdir(exist_ok=True)
    log = (ROOT / ".stack" / f"{tag}.log").open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the loop has nothing else to do
        [sys.executable, "-m", "streams", "worker"], env=env, cwd=ROOT,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{settings.web_port}"
    try:
        await wait_healthy(url, proc)
        events, _ = generate(users=args.users, seed=7, days=30)
        half = len(events) // 2
        batched = await phase(url, events[:half], args.clients, args.batch, args.seconds)
        single = await phase(url, events[half:], args.clients, 1, args.seconds)
        on_topic = await topic_count(settings)
    finally:
        proc.terminate()
        proc.wait(60)
    return {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "partitions": settings.partitions, "batched": batched, "single": single,
            "on_topic": on_topic, "accepted": batched["accepted"] + single["accepted"],
            "load_average": os.getloadavg()[0]}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=800)
    parser.add_argument("--out", type=Path, default=RESULTS / "collector.json")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    if result["on_topic"] != result["accepted"]:
        sys.exit(f"{result['accepted']} events accepted but {result['on_topic']} on the topic")
