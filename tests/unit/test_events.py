"""The event contract: every rejection has a precise reason; valid events normalise to UTC."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.events import Event, InvalidEvent, parse_event, parse_ts

BASE = {
    "event_id": "e1",
    "type": "view",
    "user_id": "u1",
    "session_id": "s1",
    "item_id": "i1",
    "ts": "2024-03-01T10:00:00+01:00",
}


def raw(**changes: object) -> bytes:
    obj = {**BASE, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not ...})


def reason(value: bytes | None, **kw: int) -> str:
    with pytest.raises(InvalidEvent) as exc:
        parse_event(value, **kw)
    return exc.value.reason


def test_valid_event_is_normalised_to_utc_ms() -> None:
    e = parse_event(raw(price=9.5, quantity=2, category="shoes"))
    assert e == Event("e1", "view", "u1", "s1", 1709283600000, "i1", "shoes", 9.5, 2)
    assert e.ts.isoformat() == "2024-03-01T09:00:00+00:00"


def test_epoch_ms_and_iso_agree() -> None:
    assert parse_event(raw(ts=1709283600000)).ts_ms == parse_event(raw()).ts_ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"not json", "not_json"),
        (b"\xff\xfe{", "bad_utf8"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (raw(event_id=...), "missing_field"),
        (raw(user_id=""), "missing_field"),
        (raw(user_id=42), "wrong_type"),
        (raw(type="teleport"), "unknown_type"),
        (raw(item_id=...), "missing_field"),
        (raw(price=-1), "bad_number"),
        (raw(price="9.99"), "wrong_type"),
        (raw(quantity=1.5), "wrong_type"),
        (raw(quantity=True), "wrong_type"),
        (raw(ts=...), "missing_field"),
        (raw(ts="yesterday"), "bad_ts"),
        (raw(ts="2024-03-01T10:00:00"), "bad_ts"),
        (raw(ts=1), "absurd_ts"),
        (raw(ts="2999-01-01T00:00:00Z"), "absurd_ts"),
        (raw(user_id="u" * 300), "too_long"),
    ],
)
def test_each_rejection_names_its_reason(value: bytes | None, expected: str) -> None:
    assert reason(value) == expected


def test_non_finite_numbers_are_rejected() -> None:
    # JSON has no NaN literal, but some producers write it anyway.
    assert reason(raw().replace(b'"item_id"', b'"price":NaN,"item_id"')) == "not_json"
    with pytest.raises(InvalidEvent, match="not finite"):
        parse_ts(math.inf)


def test_oversize_record_is_rejected_before_parsing() -> None:
    assert reason(raw(query="x" * 500), max_bytes=100) == "oversize"


def test_search_needs_no_item() -> None:
    e = parse_event(raw(type="search", item_id=..., query="red shoes"))
    assert (e.type, e.item_id, e.query) == ("search", None, "red shoes")


def test_to_json_round_trips() -> None:
    e = parse_event(raw(price=3.0))
    assert parse_event(e.to_json()) == e


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parse_event(data)
    except InvalidEvent as exc:
        assert exc.reason
