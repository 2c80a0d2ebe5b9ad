"""Hostile input for the Segment/RudderStack adapter fed through ``shopstream replay``'s
JSON-lines files (streams/domain/segment.py via streams/tools/replay.py), with Hypothesis:
arbitrary lines and calls never crash the reader; a line is either counted as an error or
gives records the worker accepts or dead-letters with a reason; valid calls with extreme
values become contract events that carry exactly those values."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.events import (
    DEFAULT_LIMITS,
    MAX_ID_LEN,
    MAX_TEXT_LEN,
    MAX_TS_MS,
    MIN_TS_MS,
    InvalidEvent,
)
from streams.core.wire import parse_event
from streams.domain.segment import TRACKED, from_segment, is_segment
from streams.tools.replay import read_records

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip


def records_of(tmp_path: Path, lines: list[str]) -> list[tuple[int, bytes | None, bytes | None]]:
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    return list(read_records(path))


# --- arbitrary input ----------------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip
_values = st.one_of(
    _json,
    st.sampled_from(["2024-03-01T10:00:00Z", "2024-03-01T10:00:00", "1999-12-31T23:59:59Z",
                     "2100-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "", "x" * 300,
                     "u\u0000", "\u202e", MIN_TS_MS, MAX_TS_MS, 1e308, -1, 10**30]),
)  # fmt: skip
_calls = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias"])},
    optional={
        "event": st.sampled_from([*TRACKED, "Checkout Started"]) | _values,
        "userId": _values, "anonymousId": _values, "messageId": _values,
        "timestamp": _values, "originalTimestamp": _values, "sentAt": _values,
        "context": st.fixed_dictionaries({}, optional={"sessionId": _values}) | _values,
        "properties": st.fixed_dictionaries({}, optional={
            "product_id": _values, "sku": _values, "id": _values, "category": _values,
            "price": _values, "quantity": _values, "query": _values, "session_id": _values,
            "products": st.lists(st.dictionaries(
                st.sampled_from(["product_id", "sku", "price", "quantity", "category"]),
                _values, max_size=4), max_size=3) | _values,
        }) | _values,
    },
)  # fmt: skip
_lines = st.one_of(
    _calls.map(json.dumps), _json.map(json.dumps), st.text(max_size=20),
    st.sampled_from(["{", '{"type": "track"', "NaN", '{"a": 1e400}', "\ud800"]),
)  # fmt: skip


@FUZZ
@given(st.lists(_lines, min_size=1, max_size=8))
def test_arbitrary_lines_never_crash_and_each_is_an_error_or_checked_records(
    tmp_path: Path, lines: list[str]
) -> None:
    lines = [line.replace("\n", " ").replace("\r", " ") for line in lines]
    records = records_of(tmp_path, lines)
    numbers = {n for n, _, _ in records}
    # every non-blank line is accounted for: an error (counted by replay), records, or a
    # call the adapter ignores on purpose (a page view, an unmapped track, an identify)
    for n, line in enumerate(lines, start=1):
        raw = line.encode(errors="surrogatepass").strip()
        if raw and n not in numbers:
            call = orjson.loads(raw)
            assert is_segment(call), line
            mapped = from_segment(call)
            assert (mapped.ignored or mapped.link) and not mapped.events, line
    for _, key, value in records:
        if key is None:
            assert value is None
            continue
        assert value is not None
        try:
            event = parse_event(value)
        except InvalidEvent as exc:  # the worker dead-letters it with this reason
            assert exc.reason and exc.reason.isidentifier()
        else:
            assert key == event.user_id.encode()


# --- valid calls, extreme values: lossless ------------------------------------------------
#: Ids: any printable characters (spaces, quotes, accents, CJK, emoji), up to the longest.
_ids = st.text(st.characters(categories=["L", "N", "P", "S"], include_characters=" "),
               min_size=1, max_size=MAX_ID_LEN)  # fmt: skip
_ms = st.one_of(st.integers(MIN_TS_MS, MAX_TS_MS - 1),
                st.sampled_from([MIN_TS_MS, MAX_TS_MS - 1, 2_193_528_273_693]))  # fmt: skip
_offsets = st.sampled_from([0, 60, -60, 330, 840, -720, 1439, -1439]).map(
    lambda m: timezone(timedelta(minutes=m))
)
_prices = st.floats(0, DEFAULT_LIMITS.max_price) | st.sampled_from([0, 5e-324, 0.1, 1_000_000])
_quantities = st.integers(1, DEFAULT_LIMITS.max_quantity)



def fits_line(quantity: int) -> Callable[[float], bool]:
    """Whether a price times ``quantity`` is within the contract's line value."""
    return lambda price: price * quantity <= DEFAULT_LIMITS.max_line_value

@st.composite
def product(draw: st.DrawFn) -> dict[str, Any]:
    quantity = draw(_quantities)
    price = draw(_prices.filter(fits_line(quantity)))
    out = {draw(st.sampled_from(["product_id", "sku", "id"])): draw(_ids), "price": price,
           "quantity": quantity}  # fmt: skip
    return out | ({"category": draw(_ids)} if draw(st.booleans()) else {})


@st.composite
def valid_call(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(TRACKED)))
    ms, tz = draw(_ms), draw(_offsets)
    ts = (EPOCH + timedelta(milliseconds=ms)).astimezone(tz).isoformat(timespec="milliseconds")
    # the id of an order's n-th product is "<messageId>-<n>": it stays within the contract's
    # longest id for a messageId of up to 253 characters (Segment's are UUIDs)
    call: dict[str, Any] = {"type": "track", "event": name, "messageId": draw(_ids.filter(
        lambda s: len(s) <= MAX_ID_LEN - 3)), draw(st.sampled_from(["userId", "anonymousId"])):
        draw(_ids), draw(st.sampled_from(["timestamp", "originalTimestamp", "sentAt"])): ts,
        "_ms": ms}  # fmt: skip
    if name == "Products Searched":
        call["properties"] = {"query": draw(st.text(
            st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=MAX_TEXT_LEN))}
    elif name == "Order Completed":
        call["properties"] = {"products": draw(st.lists(product(), min_size=1, max_size=4))}
    else:
        call["properties"] = draw(product())
    return call


@FUZZ
@given(st.lists(valid_call(), min_size=1, max_size=5))
def test_valid_calls_become_events_with_exactly_their_values(
    tmp_path: Path, calls: list[dict[str, Any]]
) -> None:
    lines = [json.dumps({k: v for k, v in c.items() if k != "_ms"}) for c in calls]
    by_line: dict[int, list[Any]] = {}
    for n, key, value in records_of(tmp_path, lines):
        assert key is not None and value is not None, lines[n - 1]
        by_line.setdefault(n, []).append(parse_event(value))  # accepted: nothing for the DLQ
    assert sorted(by_line) == list(range(1, len(calls) + 1))
    for n, call in enumerate(calls, start=1):
        events, props = by_line[n], call["properties"]
        user = call.get("userId") or call["anonymousId"]
        products = props.get("products", [props])
        assert len(events) == (len(products) if "products" in props else 1)
        for i, e in enumerate(events):
            assert (e.type, e.user_id, e.ts_ms) == (TRACKED[call["event"]], user, call["_ms"])
            assert e.event_id == (f"{call['messageId']}-{i}" if "products" in props
                                  else call["messageId"])  # fmt: skip
            if e.type == "search":
                assert e.query == props["query"]
                continue
            p = products[i]
            item = p.get("product_id") or p.get("sku") or p.get("id")
            assert (e.item_id, e.category) == (item, p.get("category"))
            assert (e.price, e.quantity) == (float(p["price"]), p["quantity"])
