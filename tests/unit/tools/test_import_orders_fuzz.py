"""Hostile input for ``shopstream import orders`` (streams/tools/import_orders.py), with
Hypothesis: arbitrary CSV cells never crash the reader and every row is either an event the
worker accepts or counted under a reason; rows of valid but extreme values (the longest ids,
any printable characters, quotes and commas, the largest prices and quantities, times to the
millisecond up to 2100 in any zone offset) become events that carry exactly those values."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.events import DEFAULT_LIMITS, MAX_ID_LEN, MAX_TS_MS, MIN_TS_MS
from streams.core.wire import parse_event
from streams.tools.import_orders import LINES, TOTAL_ITEM, TOTALS, Rows, read_rows

RETAIL_HEADER = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                 "UnitPrice", "CustomerID", "Country")  # fmt: skip
HEADERS = {"lines": (*LINES, "category"), "totals": TOTALS, "online_retail": RETAIL_HEADER}
#: The importer's own reasons; the others are the contract's (InvalidEvent.reason).
IMPORT_REASONS = {"no_customer", "no_order_or_item", "bad_quantity", "bad_price", "cancelled",
                  "negative_price", "bad_amount", "refund", "bad_timestamp", "bad_csv"}  # fmt: skip
CONTRACT_REASONS = {"too_long", "bad_chars", "bad_number", "absurd_ts", "bad_ts", "wrong_type",
                    "missing_field", "oversize"}  # fmt: skip
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def read(text: str) -> Rows:
    """As the command reads a file: lines with their line ends (quoted newlines kept)."""
    return read_rows(io.StringIO(text, newline=""))


# --- arbitrary cells ----------------------------------------------------------------------
_cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "0", "-1", "1.5", "1e308", "-0", "nan", "inf", "1e4", "10001",
                     "2024-03-01", "2024-03-01T10:00:00+14:00", "1999-12-31T23:59:59-12:00",
                     "2100-01-01T00:00:00Z", "9999-12-31T23:59:59", "12/1/2010 8:26",
                     "31/12/2099 23:59", "C536379", "\ufeff17850", "u\u0000", "a\nb", '"q"',
                     "x,y", "\u202eevil"]),
    st.builds(str.__mul__, st.sampled_from(["x", "\u00e9", "9"]),
              st.sampled_from([250, 257, 5000])),
)  # fmt: skip


@FUZZ
@given(st.sampled_from(sorted(HEADERS)),
       st.lists(st.lists(_cells, min_size=1, max_size=10), max_size=8))  # fmt: skip
def test_arbitrary_rows_never_crash_and_each_is_an_event_or_a_reason(
    shape: str, rows: list[list[str]]
) -> None:
    got = read(csv_text(HEADERS[shape], rows))
    assert got.shape == shape and got.rows == len(rows)
    assert len(got.events) + sum(got.skipped.values()) == got.rows
    assert set(got.skipped) <= IMPORT_REASONS | CONTRACT_REASONS, got.skipped
    for _, event in got.events:  # what is sent, the worker accepts: nothing for the DLQ
        parsed = parse_event(orjson.dumps(event))
        assert parsed.type == "purchase" and parsed.ts_ms == event["ts"]
    assert [e["ts"] for _, e in got.events] == sorted(e["ts"] for _, e in got.events)
    assert len({e["event_id"] for _, e in got.events}) == len(got.events)


def test_a_field_over_the_csv_size_limit_costs_only_its_row() -> None:
    text = csv_text(TOTALS, [["u1", "2024-03-01", "x" * 200_000], ["u2", "2024-03-01", "3"]])
    got = read(text)
    assert dict(got.skipped) == {"bad_csv": 1}
    assert [e["user_id"] for _, e in got.events] == ["u2"]


def test_a_quantity_beyond_any_json_integer_costs_only_its_row() -> None:
    """Found by the test above: ``1e250`` is an integral float whose int has no JSON form."""
    got = read(csv_text(HEADERS["lines"], [["o1", "c1", "2024-03-01", "i1", "1e250", "1", ""],
                                           ["o1", "c1", "2024-03-01", "i2", "1e3", "1", ""]]))
    assert dict(got.skipped) == {"bad_quantity": 1}
    assert [e["quantity"] for _, e in got.events] == [1000]


# --- valid, extreme values: lossless ------------------------------------------------------
#: Ids as shops make them: any printable characters (commas, quotes, accents, CJK, emoji),
#: up to the contract's longest, without surrounding blanks (the importer strips those).
_ids = st.text(
    st.characters(categories=["L", "N", "P", "S"], exclude_characters="\ufeff"),
    min_size=1, max_size=MAX_ID_LEN,
).filter(lambda s: s == s.strip())  # fmt: skip
_ms = st.one_of(st.integers(MIN_TS_MS, MAX_TS_MS - 1),
                st.sampled_from([MIN_TS_MS, MAX_TS_MS - 1, 2_193_528_273_693]))  # fmt: skip
_offsets = st.sampled_from([0, 60, -60, 330, 840, -720, 59, -1439, 1439]).map(
    lambda m: timezone(timedelta(minutes=m))
)
_quantities = st.one_of(st.integers(1, DEFAULT_LIMITS.max_quantity),
                        st.sampled_from([1, DEFAULT_LIMITS.max_quantity]))  # fmt: skip
_prices = st.one_of(
    st.floats(0, DEFAULT_LIMITS.max_price), st.integers(0, int(DEFAULT_LIMITS.max_price)),
    st.sampled_from([0.0, 5e-324, 0.1, 9.99, DEFAULT_LIMITS.max_price]),
)


def iso(ms: int, tz: timezone) -> str:
    """``ms`` written in zone ``tz`` with its offset, to the millisecond."""
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(tz).isoformat(timespec="milliseconds")



def fits_line(quantity: int) -> Callable[[float], bool]:
    """Whether a price times ``quantity`` is within the contract's line value."""
    return lambda price: price * quantity <= DEFAULT_LIMITS.max_line_value

@st.composite
def order_lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 6))):
        quantity = draw(_quantities)
        price = draw(_prices.filter(fits_line(quantity)))
        order = draw(_ids.filter(lambda s: not s.upper().startswith("C")))  # C: cancelled
        out.append({"order_id": order, "customer_id": draw(_ids), "item_id": draw(_ids),
                    "quantity": quantity, "price": price, "ms": draw(_ms), "tz": draw(_offsets),
                    "category": draw(st.none() | _ids)})  # fmt: skip
    return out


@FUZZ
@given(order_lines())
def test_valid_order_lines_convert_losslessly(lines: list[dict[str, Any]]) -> None:
    rows = [[str(r["order_id"]), str(r["customer_id"]), iso(r["ms"], r["tz"]),
             str(r["item_id"]), str(r["quantity"]), repr(r["price"]), r["category"] or ""]
            for r in lines]  # fmt: skip
    got = read(csv_text(HEADERS["lines"], rows))
    assert not got.skipped, got.skipped
    want = Counter((r["customer_id"], r["item_id"], r["quantity"], float(r["price"]), r["ms"],
                    r["category"]) for r in lines)  # fmt: skip
    events = [e for _, e in got.events]
    assert Counter((e["user_id"], e["item_id"], e["quantity"], e["price"], e["ts"],
                    e.get("category")) for e in events) == want  # fmt: skip
    for e in events:
        parsed = parse_event(orjson.dumps(e))  # the worker takes the same values
        assert (parsed.event_id, parsed.user_id, parsed.item_id, parsed.session_id) == (
            e["event_id"], e["user_id"], e["item_id"], e["session_id"])  # fmt: skip
        assert (parsed.price, parsed.quantity, parsed.ts_ms) == (e["price"], e["quantity"], e["ts"])
    assert len({e["event_id"] for e in events}) == len(events)
    sessions = {r["order_id"]: None for r in lines}
    assert len({e["session_id"] for e in events}) == len(sessions)  # one session per order


@FUZZ
@given(st.lists(st.tuples(_ids, _ms, _offsets, _prices), min_size=1, max_size=6))
def test_valid_order_totals_convert_losslessly(
    totals: list[tuple[str, int, timezone, float]],
) -> None:
    got = read(csv_text(TOTALS, [[u, iso(ms, tz), repr(a)] for u, ms, tz, a in totals]))
    assert not got.skipped, got.skipped
    events = [e for _, e in got.events]
    assert Counter((e["user_id"], e["ts"], e["price"]) for e in events) == Counter(
        (u, ms, float(a)) for u, ms, _, a in totals
    )
    assert {e["item_id"] for e in events} == {TOTAL_ITEM}
    for e in events:
        assert parse_event(orjson.dumps(e)).price == e["price"]
    assert len({e["event_id"] for e in events}) == len(events)

