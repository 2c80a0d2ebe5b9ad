"""``POST /v1/events`` against the real worker, Kafka and Redis: good events become
recommendations on the recommendations topic, bad ones are answered with their reason and
are on the DLQ, no key is 401, identify links an anonymous visitor to the customer, a
client over its rate is 429, and fuzzed bodies never get a 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from tests.support.worker import ADMIN_TOKEN, PUBLIC_KEY, WorkerProcess, consume

T0 = 1_709_283_600_000


def view(eid: str, user: str, item: str, i: int, session: str = "s") -> dict[str, Any]:
    return {"event_id": eid, "type": "view", "user_id": user, "session_id": f"{user}-{session}",
            "item_id": item, "ts": T0 + i * 1000}  # fmt: skip


def post(worker: WorkerProcess, body: Any, token: str | None = PUBLIC_KEY,
         path: str = "/v1/events") -> tuple[int, dict[str, str], Any]:  # fmt: skip
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    status, headers, answer = worker.call("POST", path, token=token, body=raw,
                                          headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        return status, headers, orjson.loads(answer)
    except orjson.JSONDecodeError:
        return status, headers, answer


async def test_collector_produces_dead_letters_links_and_limits(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN,
                              collector_max_events=40, collector_events_per_s=5,
                              collector_max_bytes=20_000)  # fmt: skip
    await ensure_topics(settings)
    # two shoppers walk the same items, so the store learns i1 -> i2 -> i3
    good = [view(f"a{i}", "alice", f"i{i % 3 + 1}", i) for i in range(6)]
    good += [view(f"b{i}", "bob", f"i{i % 3 + 1}", 10 + i) for i in range(6)]
    bad = [{**good[0], "event_id": "bad-type", "type": "teleport"},
           {**good[0], "event_id": "bad-ts", "ts": "yesterday"},
           {"event_id": "bad-item", "type": "view", "user_id": "carol", "session_id": "c",
            "ts": T0}]  # fmt: skip
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        status, _, answer = post(worker, good[:1], token=None)
        assert status == 401, answer
        assert post(worker, good[:1], token="wrong-" + PUBLIC_KEY)[0] == 401
        assert post(worker, good[:1], token=ADMIN_TOKEN)[0] == 200  # admin opens public routes

        status, _, answer = post(worker, [*good[1:6], bad[0], *good[6:], bad[1], bad[2]])
        assert status == 200, answer
        assert (answer["accepted"], answer["rejected"], answer["failed"]) == (11, 3, 0)
        by_status = {r["index"]: (r["status"], r.get("reason")) for r in answer["results"]}
        assert by_status[5] == ("rejected", "unknown_type")
        assert by_status[12] == ("rejected", "bad_ts") and by_status[13] == ("rejected",
                                                                             "missing_field")
        # the key as a query parameter (what the browser tracker sends): same answer
        status, _, answer = post(worker, [{"type": "identify", "anonymous_id": "anon-7",
                                           "user_id": "cust-7"}],
                                 token=None, path=f"/v1/events?key={PUBLIC_KEY}")  # fmt: skip
        assert status == 200 and answer["identified"] == 1, answer
        status, _, answer = post(worker, [view("anon-view", "anon-7", "i1", 30)])
        assert answer["accepted"] == 1, answer
        # a Segment batch, as a shop's existing tracking sends it
        segment = {"type": "track", "event": "Product Viewed", "messageId": "seg-1",
                   "userId": "erin", "timestamp": "2024-03-01T09:01:00Z",
                   "properties": {"product_id": "i2", "price": 5}}  # fmt: skip
        status, _, answer = post(worker, {"batch": [segment, {"type": "page", "userId": "erin"}]})
        assert (answer["accepted"], answer["ignored"]) == (1, 1), answer

        recs = await consume(
            settings.topic_recommendations, settings,
            done=lambda out: {"b5", "anon-view", "seg-1"} <= {
                orjson.loads(r.value)["trigger_event_id"] for r in out},
        )  # fmt: skip
        messages = [orjson.loads(r.value) for r in recs]
        triggers = {m["trigger_event_id"] for m in messages}
        # one recommendation per user and batch, for its last event; never for a bad one
        assert {"a5", "b5"} <= triggers <= {e["event_id"] for e in good} | {"anon-view", "seg-1"}
        seg = next(m for m in messages if m["trigger_event_id"] == "seg-1")
        assert seg["user_id"] == "erin" and seg["items"]
        last_bob = next(m for m in messages if m["trigger_event_id"] == "b5")
        assert last_bob["items"], last_bob  # learned from alice's walk
        linked = next(m for m in messages if m["trigger_event_id"] == "anon-view")
        assert linked["user_id"] == "cust-7"  # the anonymous visitor's event, as the customer
        keys = {r.key for r in recs if orjson.loads(r.value)["trigger_event_id"] == "anon-view"}
        assert keys == {b"cust-7"}

        dlq = await consume(settings.topic_dlq, settings, until=3)
        reasons = {orjson.loads(r.value)["event_id"]: dict(r.headers)["reason"] for r in dlq}
        assert reasons == {"bad-type": b"unknown_type", "bad-ts": b"bad_ts",
                           "bad-item": b"missing_field"}  # fmt: skip
        assert all(dict(r.headers)["source_topic"] == b"http:/v1/events" for r in dlq)

        # forgetting the customer removes the link: the anonymous id is anonymous again
        status, _, body = worker.call("DELETE", "/users/cust-7", token=ADMIN_TOKEN)
        assert status == 200 and orjson.loads(body)["removed"]["identity_links"] == 1
        post(worker, [view("anon-after", "anon-7", "i1", 31)])
        after = await consume(settings.topic_recommendations, settings, done=lambda out: any(
            orjson.loads(r.value)["trigger_event_id"] == "anon-after" for r in out))  # fmt: skip
        assert {r.key for r in after if b"anon-after" in r.value} == {b"anon-7"}

        status, _, answer = post(worker, b"[" + b" " * 20_001 + b"]")
        assert status == 413 and answer["reason"] == "too_large"
        status, _, answer = post(worker, [good[0]] * 41)
        assert status == 413 and answer["reason"] == "too_many_events"
        # 5 events/s, bursts of 40: the second full request in a row waits
        flood = [view(f"f{i}", "dave", "i1", 40 + i) for i in range(40)]
        statuses = [post(worker, flood) for _ in range(2)]
        assert statuses[-1][0] == 429 and int(statuses[-1][1]["Retry-After"]) >= 1

        @hsettings(max_examples=150, deadline=None,
                   suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(st.binary(max_size=200) | st.builds(
            orjson.dumps, st.lists(st.dictionaries(
                st.sampled_from(["event_id", "type", "user_id", "session_id", "ts", "item_id"]),
                st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
                | st.just("view")),
                max_size=3)))  # fmt: skip
        def fuzz(body: bytes) -> None:
            status, _, answer = post(worker, body)
            assert status in (200, 400, 413, 429), (status, body, answer)

        fuzz()
        assert worker.alive(), worker.logs()
        assert "Traceback" not in worker.full_log(), worker.logs()
