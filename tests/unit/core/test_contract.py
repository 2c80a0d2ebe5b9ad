"""The committed JSON Schema of the event contract is the one the code generates, and it
never accepts a record the worker rejects (streams/core/contract.py)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.contract import SCHEMA_PATH, event_schema, schema_text
from streams.core.events import InvalidEvent
from streams.core.wire import parse_event
from streams.tools.generate import generate

ROOT = Path(__file__).resolve().parents[3]
VALIDATOR = jsonschema.Draft202012Validator(
    event_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def test_the_committed_schema_is_generated_from_the_code() -> None:
    committed = (ROOT / SCHEMA_PATH).read_text()
    made_with = json.loads(committed)["$comment"].rsplit(" ", 1)[-1]
    if made_with != unicodedata.unidata_version:  # another Python: another Unicode database
        pytest.skip(f"the committed schema lists Unicode {made_with}'s printable characters; "
                    f"this Python has Unicode {unicodedata.unidata_version}")
    assert committed == schema_text(), (
        "regenerate: python -m streams.core.contract > " + SCHEMA_PATH
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(committed))


def test_every_generated_storefront_event_and_the_readme_example_fit() -> None:
    events, _ = generate(users=30, seed=3, days=20)
    readme = {"event_id": "e-1001", "type": "view", "user_id": "u42", "session_id": "s9",
              "item_id": "sku-7", "category": "shoes", "price": 59.0,
              "ts": "2024-03-01T10:00:00+01:00"}  # fmt: skip
    for event in [*events, readme]:
        VALIDATOR.validate(event)
        parse_event(json.dumps(event).encode())


def accepted(obj: object) -> bool:
    try:
        parse_event(json.dumps(obj).encode())
    except InvalidEvent:
        return False
    return True


_VALID = {"event_id": "e1", "type": "view", "user_id": "u1", "session_id": "s1",
          "ts": 1_709_283_600_000, "item_id": "i1"}  # fmt: skip
_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.integers(-(2**66), 2**66),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4),
    st.builds(str.__mul__, st.sampled_from(["x", "\u00e9"]), st.sampled_from([256, 257, 1025])),
    st.sampled_from(["view", "purchase", "search", "session_start", "bogus", "",
                     "2024-03-01T09:00:00Z", "2024-03-01T09:00:00+05:30", "2024-03-01T09:00:00",
                     "2024-02-30T09:00:00Z", "1999-01-01T00:00:00Z", "2150-01-01T00:00:00Z",
                     "20240301", "not a time"]),
    st.sampled_from([946_684_800_000, 946_684_799_999, 4_102_444_799_999, 4_102_444_800_000,
                     1_709_283_600_000.0, 0, -1]),
)  # fmt: skip
_fields = ("event_id", "type", "user_id", "session_id", "ts", "item_id", "category",
           "price", "quantity", "query", "coupon_code", "rec_id", "extra")  # fmt: skip


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])  # under load
@given(st.dictionaries(st.sampled_from(_fields), _values, max_size=13), st.booleans())
def test_what_the_schema_accepts_the_worker_accepts(
    changes: dict[str, object], valid: bool
) -> None:
    """A storefront that validates its events with the schema never feeds the DLQ (the
    schema may be stricter than the worker: e.g. a float ``ts`` is accepted by the worker)."""
    obj = {**(_VALID if valid else {}), **changes}
    if VALIDATOR.is_valid(obj):
        assert accepted(obj), obj
