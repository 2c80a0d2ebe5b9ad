"""Issue 16: the real BatchProcessor (in-memory I/O) drops a forgotten user's records at or
below the erasure fence before any effect: no envelope, no similarity update, no output."""

from __future__ import annotations

import orjson

from streams.core.settings import Settings
from streams.domain.forgotten import user_digest
from tests.support.fakes import fake_shop, message, new_processor, topic_of

T0 = 1_709_283_600_000


def raw(user: str, n: int, etype: str = "view") -> bytes:
    return orjson.dumps({"event_id": f"{user}-{n}", "type": etype, "user_id": user,
                         "session_id": f"{user}-s", "item_id": f"i{n % 3}", "price": 1.0,
                         "ts": T0 + n * 1000})  # fmt: skip


async def test_a_forgotten_users_records_below_the_fence_have_no_effect_later_ones_do() -> None:
    shop = fake_shop(Settings(max_events_per_min=0))
    proc = new_processor(shop)
    fences = proc.parts.tombstones.fences
    fences.add(user_digest("gone"), {":0": 3})  # forgotten up to offset 3 of partition 0
    batch = [message("t", 0, 0, b"gone", raw("gone", 0)),
             message("t", 0, 1, b"other", raw("other", 1)),
             message("t", 0, 2, b"gone", raw("gone", 2, "purchase")),
             message("t", 0, 3, b"gone", b"{not json")]  # fmt: skip
    await proc.process(batch)
    assert sorted(shop.profiles.data) == ["other"]
    sent = [(name, key) for name in ("recommendations", "dlq", "segments", "anomalies",
                                     "churn_alerts")
            for key, _, _ in topic_of(shop, name).sent]  # fmt: skip
    assert sent and all(key != b"gone" for _, key in sent), sent
    store = shop.runtime.store
    assert [eid for _, _, eid in store.learned] == ["other-1"]  # type: ignore[attr-defined]
    metrics = shop.telemetry.registry.get_sample_value
    assert metrics("shopstream_erased_dropped_total", {"kind": "event"}) == 2
    assert metrics("shopstream_erased_dropped_total", {"kind": "rejected"}) == 1

    await proc.process([message("t", 0, 4, b"gone", raw("gone", 4))])  # back after the erasure
    assert sorted(shop.profiles.data) == ["gone", "other"]
    recs = [orjson.loads(v or b"") for _, v, _ in topic_of(shop, "recommendations").sent]
    assert [r["trigger_event_id"] for r in recs if r["user_id"] == "gone"] == ["gone-4"]
