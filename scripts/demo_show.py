"""Helpers of scripts/demo.sh: wait for the worker, then show what came out of it."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
from typing import Any
from urllib.parse import quote

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.settings import Settings
from streams.kafka import client_options, committed_offsets
from streams.tools.tail import read_topic, stop_quietly


def get(port: int, path: str) -> Any:
    """GET from the demo's worker, with the admin token if one is configured."""
    token = Settings.from_env().admin_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return orjson.loads(resp.read())


def wait_healthy(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(port, "/healthz")["status"] == "ok":
                print("worker is healthy")
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"worker not healthy after {timeout:.0f}s; see .stack/demo/worker.log")


async def end_offsets(consumer: AIOKafkaConsumer, topics: list[str]) -> dict[str, int]:
    out = {}
    for topic in topics:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps) if tps else {}
        out[topic] = sum(ends.values())
    return out


def worker_alive(port: int) -> bool:
    try:
        return bool(get(port, "/healthz")["status"] == "ok")
    except OSError:
        return False


async def wait_caught_up(
    settings: Settings, topics: list[str], port: int, cap_s: float = 600
) -> dict[str, int]:
    """Wait until the worker has committed every record of the events topic (its consumer
    group's offsets reach the log end), printing progress; then until no output topic grows
    for two seconds (the last batch's sends). Exits with an error if the worker stops."""
    consumer = AIOKafkaConsumer(*topics, settings.topic_events, **client_options(settings))
    await consumer.start()
    await consumer.topics()  # the cluster's metadata: every topic's partitions
    start, shown = time.monotonic(), 0.0
    try:
        while True:
            total = (await end_offsets(consumer, [settings.topic_events]))[settings.topic_events]
            done = sum((await committed_offsets(settings)).values())
            if done >= total:
                break
            if not worker_alive(port):
                sys.exit("the worker stopped before it caught up; see .stack/demo/worker.log")
            if time.monotonic() - start > cap_s:
                sys.exit(f"the worker committed {done:,} of {total:,} events in {cap_s:.0f}s")
            if time.monotonic() - shown >= 5:
                print(f"  worker: {done:,} of {total:,} events committed", flush=True)
                shown = time.monotonic()
            await asyncio.sleep(1)
        last, since = await end_offsets(consumer, topics), time.monotonic()
        while time.monotonic() - since < 2:
            await asyncio.sleep(0.5)
            now = await end_offsets(consumer, topics)
            if now != last:
                last, since = now, time.monotonic()
        return last
    finally:
        await stop_quietly(consumer)


def outputs(port: int) -> None:
    settings = Settings.from_env()
    topics = [
        settings.topic_recommendations,
        settings.topic_churn_alerts,
        settings.topic_dlq,
        settings.topic_segments,
        settings.topic_anomalies,
    ]
    counts = asyncio.run(wait_caught_up(settings, topics, port))
    print("records on the output topics:")
    for topic, n in counts.items():
        print(f"  {topic:28s} {n:>8d}")
    recs = asyncio.run(
        read_topic(settings, settings.topic_recommendations, max_messages=5, idle_s=3, last=True)
    )
    print(f"\nlatest recommendations (read back from {settings.topic_recommendations}):")
    for msg in recs[-5:]:
        v = msg["value"]
        items = ", ".join(f"{i['item_id']} ({i['score']:.3f})" for i in v["items"][:5])
        print(f"  user {v['user_id']} after event {v['trigger_event_id']}: {items}")
    alerts = asyncio.run(
        read_topic(settings, settings.topic_churn_alerts, max_messages=3, idle_s=3, last=True)
    )
    if alerts:
        print(f"\nlatest churn alerts (read back from {settings.topic_churn_alerts}):")
        for msg in alerts:
            v = msg["value"]
            reasons = v.get("reasons", [])[:2]
            print(f"  {v['user_id']}: p={v['probability']:.2f} {v.get('action')} {reasons}")
    if recs:
        user = recs[-1]["value"]["user_id"]
        item = recs[-1]["value"]["items"][0]["item_id"] if recs[-1]["value"]["items"] else None
        answer = get(port, f"/users/{quote(user, safe='')}")
        print(f"\nGET /users/{user}: {orjson.dumps(answer).decode()[:400]}")
        if item:
            similar = orjson.dumps(get(port, f"/items/{quote(item, safe='')}/similar?k=3")).decode()
            print(f"GET /items/{item}/similar?k=3: {similar}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["wait-healthy", "outputs"])
    parser.add_argument("--port", type=int, default=6066)
    args = parser.parse_args()
    if args.what == "wait-healthy":
        wait_healthy(args.port)
    else:
        outputs(args.port)


if __name__ == "__main__":
    main()
