"""The thinnest real path: a plain aiokafka producer (a storefront) → worker → output topics.

Runs the real worker process against the real broker and redis-server started by
scripts/stack.sh, with topics and Redis keys private to the test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import WorkerProcess, committed, consume, produce

T0 = 1_709_283_600_000  # 2024-03-01T09:00:00Z


def event(n: int, user: str, session: str, item: str, etype: str = "view") -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{user}-{n}",
            "type": etype,
            "user_id": user,
            "session_id": session,
            "item_id": item,
            "ts": T0 + n * 1000,
        }
    )


async def test_storefront_events_yield_recommendations_and_bad_records_reach_the_dlq(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(settings)
    # Many sessions browse a -> b -> c, so c is learned as what follows b.
    history = []
    for u in range(30):
        for n, item in enumerate(["a", "b", "c"]):
            history.append((f"h{u}".encode(), event(n, f"h{u}", f"hs{u}", item)))
    garbage: list[tuple[bytes | None, bytes | None]] = [
        (b"x", b"not json at all"),
        (
            b"x",
            orjson.dumps(
                {
                    "event_id": "g",
                    "type": "view",
                    "user_id": 5,
                    "session_id": "s",
                    "item_id": "i",
                    "ts": T0,
                }
            ),
        ),
        (b"x", b""),
        (b"x", b'{"a": "\xff\xfe"}'),
        (b"x", b'{"pad": "' + b"x" * (settings.max_event_bytes + 10) + b'"}'),
    ]
    live = [
        (b"alice", event(100, "alice", "as1", "a")),
        (b"alice", event(101, "alice", "as1", "b")),
    ]

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, history + garbage + live)

        dlq = await consume(settings.topic_dlq, settings, until=len(garbage))
        reasons = sorted(dict(r.headers)["reason"].decode() for r in dlq)
        assert reasons == ["bad_utf8", "empty", "not_json", "oversize", "wrong_type"], worker.logs()
        by_value = {r.value: dict(r.headers) for r in dlq}
        for _, value in garbage:
            headers = by_value[value]  # the original bytes, unchanged
            assert headers["source_topic"].decode() == settings.topic_events
            assert int(headers["source_offset"]) >= 0

        def alice_done(out: list[Any]) -> bool:  # her last event's recommendation arrived
            return any(r.key == b"alice" and b'"alice-101"' in r.value for r in out)

        # (not a record count: under load her batch can come after the history's outputs)
        recs = await consume(settings.topic_recommendations, settings, done=alice_done)
        alice = [orjson.loads(r.value) for r in recs if r.key == b"alice"]
        assert alice, worker.stuck_report()
        last = alice[-1]
        assert last["trigger_event_id"] == "alice-101"
        assert last["items"][0]["item_id"] == "c", last
        assert worker.alive(), "bad input must not stop the worker"

        similar = worker.get_json("/items/b/similar?k=3")
        assert similar["items"][0]["item_id"] == "c"
        profile = worker.poll_json("/users/alice", lambda p: p["session_id"] == "as1",
                                   "alice's profile", timeout=30, absent_ok=True)
        assert profile["segment"]["name"] and 0 <= profile["churn_probability"] <= 1
        assert worker.get_json("/recommendations/alice?k=2")["items"]


async def test_profiles_survive_a_restart_and_redelivery_changes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    """Profiles are rebuilt from the changelog on restart; replayed offsets are fenced."""
    await ensure_topics(settings)
    first = [(b"bob", event(n, "bob", "bs1", f"i{n % 3}")) for n in range(5)]
    second = [(b"bob", event(n, "bob", "bs2", f"i{n % 3}")) for n in range(5, 8)]
    second.insert(1, second[0])  # the storefront sends one event twice: applied once
    with WorkerProcess(settings, tmp_path / "w1.log") as worker:
        worker.wait_healthy()
        await produce(settings, first)
        recs = await consume(settings.topic_recommendations, settings, until=1)
        assert recs, worker.logs()
        worker.poll_json("/users/bob", lambda p: p["profile"]["n_events"] == 5,
                         "bob's first five events", timeout=30, absent_ok=True)
    # The first worker committed what it processed (acks are manual: noack_take).
    assert await committed(settings) == len(first)
    with WorkerProcess(settings, tmp_path / "w2.log") as worker:
        worker.wait_healthy()
        await produce(settings, second)
        for _ in range(100):
            profile = worker.get_json("/users/bob")["profile"]
            if profile["n_events"] >= 8:
                break
            await asyncio.sleep(0.2)
        assert profile["n_events"] == 8, worker.logs()
        assert profile["n_sessions"] == 2
        dlq = await consume(settings.topic_dlq, settings, until=1, wait_s=2)
        assert dlq == [], [dict(r.headers) for r in dlq]
