"""Segment/RudderStack e-commerce calls onto the contract (streams/domain/segment.py), in
the collector's body parsing and in ``shopstream replay``'s JSON lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.events import InvalidEvent
from streams.core.wire import parse_event
from streams.domain.collect import parse_body
from streams.domain.segment import from_segment, is_segment
from streams.tools.replay import read_records

TS = "2024-03-01T10:00:00.000Z"


def track(event: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    call = {"type": "track", "event": event, "messageId": f"m-{event[:7]}",
            "anonymousId": "anon-1", "timestamp": TS, "properties": properties}  # fmt: skip
    return call | extra


CALLS = [
    track("Product Viewed", {"product_id": "p1", "category": "shoes", "price": 59.0}),
    track("Product Added", {"sku": "p2", "price": 10, "quantity": 2}, userId="c-9"),
    track("Product Removed", {"product_id": 3}, context={"sessionId": 1709283600}),
    track("Products Searched", {"query": "red shoes"}),
    track("Order Completed", {"order_id": "o1", "coupon": "SAVE-1F2E", "products": [
        {"product_id": "p1", "price": 59.0, "quantity": 1}, {"sku": "p2", "price": 10}]},
        userId="c-9"),
]  # fmt: skip


def test_the_ecommerce_spec_maps_onto_valid_contract_events() -> None:
    events = [e for call in CALLS for e in from_segment(call).events]
    parsed = [parse_event(orjson.dumps(e)) for e in events]
    assert [(p.type, p.item_id, p.user_id) for p in parsed] == [
        ("view", "p1", "anon-1"), ("add_to_cart", "p2", "c-9"),
        ("remove_from_cart", "3", "anon-1"), ("search", None, "anon-1"),
        ("purchase", "p1", "c-9"), ("purchase", "p2", "c-9")]  # fmt: skip
    assert parsed[0].category == "shoes" and parsed[1].quantity == 2
    assert parsed[2].session_id == "1709283600"  # RudderStack's context.sessionId
    assert parsed[0].session_id == "anon-1" and parsed[3].query == "red shoes"
    assert [p.event_id for p in parsed[4:]] == ["m-Order C-0", "m-Order C-1"]
    assert [p.coupon_code for p in parsed] == [None] * 4 + ["SAVE-1F2E"] * 2
    assert {p.ts_ms for p in parsed} == {1709287200000}


def test_identify_links_and_other_calls_are_ignored() -> None:
    assert from_segment({"type": "identify", "anonymousId": "a", "userId": "c"}).link == ("a", "c")
    for call in ({"type": "page", "name": "Home"}, track("Checkout Started", {}),
                 {"type": "identify", "userId": "c"}):  # fmt: skip
        assert from_segment(call).ignored and not from_segment(call).events
    assert not is_segment({"type": "view"}) and not is_segment([1])


@pytest.mark.parametrize(
    ("call", "reason"),
    [({**CALLS[0], "messageId": None}, "missing_field"),
     ({**CALLS[0], "anonymousId": None}, "missing_field"),
     (track("Order Completed", {"products": []}), "missing_field")],
)  # fmt: skip
def test_calls_missing_what_the_contract_needs_are_rejected(
    call: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidEvent) as exc:
        from_segment(call)
    assert exc.value.reason == reason


def test_the_collector_takes_a_segment_batch() -> None:
    identify = {"type": "identify", "anonymousId": "a", "userId": "c"}
    body = orjson.dumps({"batch": [*CALLS, {"type": "page"}, track("Product Viewed", {}),
                                   identify]})  # fmt: skip
    verdicts = parse_body(body, max_events=20, max_bytes=4096)
    assert [v.status for v in verdicts] == ["accepted"] * 5 + ["ignored", "rejected", "identify"]
    assert verdicts[4].answer()["event_ids"] == ["m-Order C-0", "m-Order C-1"]
    assert verdicts[6].reason == "missing_field"  # a view without a product id
    assert verdicts[5].answer() == {"index": 5, "status": "ignored", "detail": "page"}


def test_replay_reads_segment_lines(tmp_path: Path) -> None:
    path = tmp_path / "segment.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(c) for c in [*CALLS, {"type": "page"}]) + b"\n")
    records = list(read_records(path))
    assert [n for n, _, _ in records] == [1, 2, 3, 4, 5, 5]  # the order has two products
    assert all(k is not None for _, k, _ in records)
    assert [orjson.loads(v)["type"] for _, _, v in records if v][-1] == "purchase"
