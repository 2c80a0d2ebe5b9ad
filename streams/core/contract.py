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
from typing import Any, Final

import msgspec
import orjson

from streams.core.events import ITEM_TYPES, MAX_TS_MS, MIN_TS_MS, _Wire

SCHEMA_PATH: Final = "docs/schemas/shop-event.schema.json"
_NOTES: Final = {
    "event_id": "Unique per event; outputs carry it as trigger_event_id.",
    "user_id": "Also the record's key (UTF-8), so a user's events stay in order.",
    "item_id": "Required for view, add_to_cart, remove_from_cart and purchase.",
    "price": "Finite, not negative.",
}


#: Item events name an item (what :func:`~streams.core.events.validate` requires).
_ITEM_RULE: Final = {
    "if": {"properties": {"type": {"enum": sorted(ITEM_TYPES)}}},
    "then": {
        "required": ["item_id"],
        "properties": {"item_id": {"type": "string", "minLength": 1}},
    },
}


def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record value of the events topic."""
    generated = msgspec.json.schema(_Wire)
    body: dict[str, Any] = dict(generated["$defs"]["_Wire"])
    props: dict[str, Any] = {k: dict(v) for k, v in body["properties"].items()}
    for name, note in _NOTES.items():
        props[name]["description"] = note
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
        "description": "One storefront event: the value of a record of the events topic "
        "(JSON, UTF-8). A record that does not fit goes to the dead-letter topic with a "
        "reason. Other fields are ignored.",
        "type": "object",
        "properties": props,
        "required": body["required"],
        "allOf": [_ITEM_RULE],
    }


def schema_text() -> str:
    """The committed file's text: indented, keys in generation order, final newline."""
    return orjson.dumps(event_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(schema_text())
