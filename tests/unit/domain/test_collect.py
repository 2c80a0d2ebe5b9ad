"""The collector's body parsing (streams/domain/collect.py): one verdict per element, the
worker's own validation, whole-body refusals, and fuzzing: arbitrary bytes and arbitrary
JSON only ever give verdicts or a BodyError with a 4xx status."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.events import InvalidEvent
from streams.core.wire import parse_event
from streams.domain.collect import BodyError, TokenBuckets, parse_body

GOOD = {"event_id": "e1", "type": "view", "user_id": "u1", "session_id": "s1",
        "item_id": "i1", "ts": "2024-03-01T10:00:00+01:00"}  # fmt: skip


def parse(elements: Any, **limits: int) -> Any:
    return parse_body(orjson.dumps(elements), **({"max_events": 50, "max_bytes": 4096} | limits))


def test_each_element_gets_the_verdict_of_the_worker_intake() -> None:
    bad = [{**GOOD, "type": "teleport"}, {**GOOD, "ts": "yesterday"}, "a string",
           {k: v for k, v in GOOD.items() if k != "item_id"}, {**GOOD, "price": -1}]  # fmt: skip
    verdicts = parse([GOOD, *bad])
    assert [v.index for v in verdicts] == list(range(6))
    assert verdicts[0].status == "accepted" and len(verdicts[0].events) == 1
    assert verdicts[0].events[0].ts_ms == 1709283600000
    reasons = [v.reason for v in verdicts[1:]]
    assert reasons == ["unknown_type", "bad_ts", "not_object", "missing_field", "bad_number"]
    for v, element in zip(verdicts[1:], bad, strict=True):
        with pytest.raises(InvalidEvent) as exc:  # the same reason the worker would give
            parse_event(orjson.dumps(element))
        assert exc.value.reason == v.reason
        assert orjson.loads(v.raw) == element  # the DLQ gets the element as sent
        assert v.answer()["status"] == "rejected" and v.answer()["detail"]


def test_an_oversize_element_is_rejected_alone() -> None:
    big = {**GOOD, "event_id": "e2", "query": "x" * 900, "type": "search"}
    verdicts = parse([GOOD, big], max_bytes=800)
    assert [v.status for v in verdicts] == ["accepted", "rejected"]
    assert verdicts[1].reason == "oversize"


def test_identify_links_an_anonymous_id_to_a_customer() -> None:
    verdicts = parse([{"type": "identify", "anonymous_id": "anon-1", "user_id": "cust-1"},
                      {"type": "identify", "anonymous_id": "anon-1"},
                      {"type": "identify", "anonymous_id": "x", "user_id": "x"}])  # fmt: skip
    assert verdicts[0].link == ("anon-1", "cust-1")
    assert verdicts[0].answer() == {"index": 0, "status": "identify", "anonymous_id": "anon-1",
                                    "user_id": "cust-1"}  # fmt: skip
    assert [v.reason for v in verdicts[1:]] == ["missing_field", "same_id"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [(b"", 400, "empty"), (b"{oops", 400, "not_json"), (b'{"a": 1}', 400, "not_array"),
     (b"\xff\xfe", 400, "not_json"), (orjson.dumps([GOOD] * 51), 413, "too_many_events")],
)  # fmt: skip
def test_unusable_bodies_are_refused_whole(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(BodyError) as exc:
        parse_body(body, max_events=50, max_bytes=4096)
    assert (exc.value.status, exc.value.reason) == (status, reason)


def _check(body: bytes) -> None:
    try:
        verdicts = parse_body(body, max_events=20, max_bytes=2048)
    except BodyError as exc:
        assert 400 <= exc.status < 500
        return
    for i, v in enumerate(verdicts):
        assert v.index == i
        assert v.status in ("accepted", "rejected", "identify", "ignored")
        assert (v.reason is None) == (v.status != "rejected")
        orjson.dumps(v.answer())


def test_a_type_of_any_json_value_is_rejected_not_raised() -> None:
    # found by schemathesis against the worker: [{"type": {}}] was a 500
    for value in ({}, [], 1.5, None, True):
        [verdict] = parse([{"type": value}])
        assert verdict.status == "rejected" and verdict.reason in ("wrong_type", "missing_field")


def test_deep_nesting_is_rejected_not_raised() -> None:
    deep = b"[" + b"[" * 300 + b"]" * 300 + b"," + orjson.dumps(GOOD) + b"]"
    verdicts = parse_body(deep, max_events=5, max_bytes=4096)
    assert [(v.status, v.reason) for v in verdicts] == [
        ("rejected", "too_deep"), ("accepted", None)]  # fmt: skip
    with pytest.raises(BodyError):  # deeper than orjson reads: not JSON
        parse_body(b"[" * 2000 + b"]" * 2000, max_events=5, max_bytes=4096)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(body: bytes) -> None:
    _check(body)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20,
)  # fmt: skip
FIELDS = st.fixed_dictionaries(
    {}, optional={k: JSON | st.just(v) for k, v in GOOD.items()}
    | {"type": st.sampled_from(["view", "purchase", "search", "identify", "x", "track"]) | JSON,
       "anonymous_id": JSON, "quantity": JSON, "price": JSON, "anonymousId": JSON,
       "userId": JSON, "messageId": JSON, "properties": JSON, "context": JSON,
       "event": st.sampled_from(["Product Viewed", "Order Completed", "Products Searched"])
       | JSON, "timestamp": JSON},
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON | FIELDS, max_size=25) | JSON)
def test_fuzz_arbitrary_json(value: Any) -> None:
    _check(orjson.dumps(value))


def test_token_buckets_refill_and_forget_old_clients() -> None:
    b = TokenBuckets(rate=100, burst=500, max_clients=2)
    assert b.take("a", 500, now=0.0) == 0.0
    assert b.take("a", 100, now=0.0) == pytest.approx(1.0)
    assert b.take("a", 100, now=1.0) == 0.0  # a second later: 100 back
    assert b.take("b", 500, now=1.0) == 0.0  # clients are independent
    b.take("c", 1, now=1.0)  # "a" is the oldest of three: forgotten
    assert b.take("a", 500, now=1.0) == 0.0
    assert TokenBuckets(rate=0, burst=0).take("a", 10**6, now=0.0) == 0.0  # off
