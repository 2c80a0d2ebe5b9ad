"""The JSON Schema of a ``shop.events`` record, generated from the code that checks records.

msgspec derives the schema of :class:`~streams.core.events._Wire` (the contract as the fast
path decodes it); :func:`event_schema` adds what the Python checks say beyond it (an item id
for item events, the ``ts`` range and forms). The schema is committed as
``docs/schemas/shop-event.schema.json`` for storefront developers;
tests/unit/core/test_contract.py checks that the file is what this module generates and that
every record the schema accepts is accepted by :func:`~streams.core.events.parse_event`
(the schema is at least as strict as the worker).

Regenerate with ``python -m streams.core.contract > docs/schemas/shop-event.schema.json``.

>>> schema = event_schema()
>>> schema["required"], schema["properties"]["type"]["enum"][:2]
(['event_id', 'type', 'user_id', 'session_id', 'ts'], ['add_to_cart', 'purchase'])
"""

from __future__ import annotations

import sys
import unicodedata
from typing import Any, Final

import msgspec
import orjson

from streams.core.events import DEFAULT_LIMITS, ITEM_TYPES, MAX_TS_MS, MIN_TS_MS
from streams.core.wire import _Wire

SCHEMA_PATH: Final = "docs/schemas/shop-event.schema.json"
_NOTES: Final = {
    "event_id": "Unique per event; outputs carry it as trigger_event_id.",
    "user_id": "Also the record's key (UTF-8), so a user's events stay in order.",
    "item_id": "Required for view, add_to_cart, remove_from_cart and purchase.",
    "price": "Finite, not negative; price x quantity is bounded too (the allOf rules).",
    "coupon_code": "On a purchase paid with a coupon: counts as the redemption of a churn "
    "coupon in the alert's outcome (shop.alert-outcomes).",
    "rec_id": "The rec_id of a shop.recommendations message this view, cart or purchase "
    "followed: a click on it, and the revenue it led to, per experiment arm.",
}


#: Item events name an item (what :func:`~streams.core.events.validate` requires).
_ITEM_RULE: Final = {
    "if": {"properties": {"type": {"enum": sorted(ITEM_TYPES)}}},
    "then": {
        "required": ["item_id"],
        "properties": {"item_id": {"type": "string", "minLength": 1}},
    },
}


def printable_class() -> str:
    """A regex character class of the Basic Multilingual Plane characters that
    :meth:`str.isprintable` accepts (what an id may hold; the worker also accepts printable
    characters beyond the BMP, which the schema, being stricter, leaves out).

    >>> import re
    >>> ok = re.compile(f"^{printable_class()}*$")
    >>> [bool(ok.match(t)) for t in ("sku-7 Größe", "a\u202eb", "tab\\t", "\u00ad")]
    [True, False, False, False]
    """
    ranges, start = [], None
    for c in range(0x10001):
        if c < 0x10000 and chr(c).isprintable():
            start = c if start is None else start
        elif start is not None:
            ranges.append(f"\\u{start:04x}" + ("" if c - 1 == start else f"-\\u{c - 1:04x}"))
            start = None
    return "[" + "".join(ranges) + "]"


def _line_value_rules() -> list[dict[str, Any]]:
    """price x quantity at most ``max_line_value``, as rules JSON Schema can state (it cannot
    multiply): above each price tier (x10 from max_line_value / max_quantity up to
    max_price), a lower quantity bound. Stricter than the worker, never looser."""
    lim = DEFAULT_LIMITS
    rules, low = [], lim.max_line_value / lim.max_quantity
    while low < lim.max_price:
        high = min(low * 10, lim.max_price)
        rules.append({
            "if": {"properties": {"price": {"exclusiveMinimum": low}}, "required": ["price"]},
            "then": {"properties": {"quantity": {"maximum": int(lim.max_line_value // high)}}},
        })  # fmt: skip
        low = high
    return rules


def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record value of the events topic."""
    generated = msgspec.json.schema(_Wire)
    body: dict[str, Any] = dict(generated["$defs"]["_Wire"])
    props: dict[str, Any] = {k: dict(v) for k, v in body["properties"].items()}
    for name, note in _NOTES.items():
        props[name]["description"] = note
    printable = f"^{printable_class()}*$"  # ids and category: printable characters only
    for name in ("event_id", "user_id", "session_id"):
        props[name]["pattern"] = printable
    for name in ("item_id", "category", "coupon_code", "rec_id"):
        props[name]["anyOf"][0]["pattern"] = printable
    props["query"]["anyOf"][0]["pattern"] = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    props["price"]["anyOf"][0]["maximum"] = DEFAULT_LIMITS.max_price
    props["quantity"]["anyOf"][0]["maximum"] = DEFAULT_LIMITS.max_quantity
    props["ts"] = {
        "description": "Event time: epoch milliseconds, or ISO-8601 with a zone; between "
        "2000-01-01 and 2100-01-01 UTC.",
        "anyOf": [
            {"type": "integer", "minimum": MIN_TS_MS, "exclusiveMaximum": MAX_TS_MS},
            {"type": "string", "format": "date-time", "pattern": "^20[0-9]{2}-"},
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "shop.events record",
        "$comment": f"ids: the printable characters of Unicode {unicodedata.unidata_version}",
        "description": "One storefront event: the value of a record of the events topic "
        "(JSON, UTF-8). A record that does not fit goes to the dead-letter topic with a "
        "reason. Other fields are ignored.",
        "type": "object",
        "properties": props,
        "required": body["required"],
        "allOf": [_ITEM_RULE, *_line_value_rules()],
    }


def schema_text() -> str:
    """The committed file's text: indented, keys in generation order, final newline."""
    return orjson.dumps(event_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(schema_text())
