"""The event contract: every rejection has a precise reason; valid events normalise to UTC."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.events import Event, InvalidEvent, parse_ts
from streams.core.wire import parse_event

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


# --- the msgspec fast path agrees with the Python checks -----------------------------------
def _outcome(parse: object, raw: bytes) -> object:
    try:
        return parse(raw)  # type: ignore[operator]
    except InvalidEvent as exc:
        return exc.reason


_text = st.one_of(
    st.just(""), st.text(st.sampled_from('ab\u00e9\U0001f600 "\\\n'), max_size=6),
    st.sampled_from(["\ud800", "a\udc00b", "\u00e9t\u00e9"]),  # lone surrogates: escaped
    # around the length limits (256 for ids, 1024 for the query); built, not drawn, so that
    # generation stays fast
    st.builds(str.__mul__, st.sampled_from(["x", "\u00e9", "\U0001f600"]),
              st.sampled_from([255, 256, 257, 1023, 1024, 1025])),
)  # fmt: skip
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), _text,
    st.sampled_from(["view", "purchase", "search", "session_start", "bogus",
                     "2024-03-01T09:00:00Z", "2024-03-01T09:00:00", "1999-01-01T00:00:00Z"]),
    st.sampled_from([1_709_283_600_000, 1_709_283_600_000.5, 3.0, 2.5, -0.0, 0]),
)  # fmt: skip
_fields = ("event_id", "type", "user_id", "session_id", "ts", "item_id", "category",
           "price", "quantity", "query", "coupon_code", "rec_id", "extra")  # fmt: skip
_VALID = {"event_id": "e1", "type": "view", "user_id": "u1", "session_id": "s1",
          "ts": 1_709_283_600_000, "item_id": "i1"}  # fmt: skip


@given(st.dictionaries(st.sampled_from(_fields), _scalar, max_size=13), st.booleans())
def test_the_fast_path_accepts_only_what_validate_accepts_with_the_same_result(
    changes: dict[str, object], start_valid: bool
) -> None:
    """Whenever ``parse_fast`` returns an event, the Python path returns the same one; when
    it declines, ``parse_event`` is exactly the Python path (reason included)."""
    from streams.core.wire import parse_fast, parse_slow

    obj = {**(_VALID if start_valid else {}), **changes}
    raw = json.dumps(obj).encode()  # stdlib: integers beyond 64 bits too
    fast = parse_fast(raw)
    slow = _outcome(parse_slow, raw)
    if fast is not None:
        assert fast == slow
        assert [type(getattr(fast, f)) for f in Event.__slots__] == [  # type: ignore[attr-defined]
            type(getattr(slow, f)) for f in Event.__slots__  # type: ignore[attr-defined]
        ]
    assert _outcome(parse_event, raw) == slow


def test_the_fast_path_takes_the_common_shapes() -> None:
    from streams.core.wire import parse_fast

    purchase = {**_VALID, "type": "purchase", "price": 19.9, "quantity": 2, "category": "c",
                "coupon_code": "SAVE-1F2E"}
    search = {**_VALID, "type": "search", "query": "red socks", "item_id": None}
    iso = {**_VALID, "ts": "2024-03-01T10:00:00+01:00"}
    for obj in (_VALID, purchase, search, iso):
        assert parse_fast(orjson.dumps(obj)) == parse_event(orjson.dumps(obj))
    assert parse_event(orjson.dumps(purchase)).coupon_code == "SAVE-1F2E"
    clicked = {**_VALID, "rec_id": "ae86a5c351f039b34f045d659f3d64b4"}
    assert parse_fast(orjson.dumps(clicked)) == parse_event(orjson.dumps(clicked))
    assert parse_event(orjson.dumps(clicked)).rec_id == clicked["rec_id"]
    with pytest.raises(InvalidEvent, match="rec_id"):  # ids' rules: printable, <= 256
        parse_event(orjson.dumps({**clicked, "rec_id": "r" * 257}))
    with pytest.raises(InvalidEvent, match="coupon_code"):  # ids' rules: printable, <= 256
        parse_event(orjson.dumps({**purchase, "coupon_code": "a\u202eb"}))
