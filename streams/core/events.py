"""The input contract of ``shop.events``: raw records, typed events and strict validation.

Every record a storefront publishes is parsed by :func:`parse_event`. A valid record becomes
an immutable :class:`Event` with its timestamp normalised to UTC epoch milliseconds; an
invalid one raises :class:`InvalidEvent` whose ``reason`` is a short machine-readable code
and whose ``detail`` says what exactly was wrong. The agent sends the original bytes of an
invalid record to the dead-letter topic with that reason in the headers.

>>> e = parse_event(b'{"event_id":"e1","type":"view","user_id":"u1","session_id":"s1",'
...                 b'"item_id":"i9","ts":"2024-03-01T10:00:00+01:00"}')
>>> e.type, e.item_id, e.ts_ms
('view', 'i9', 1709283600000)
>>> parse_event(b'{"type":"teleport"}')
Traceback (most recent call last):
...
streams.core.events.InvalidEvent: missing_field: missing required field 'event_id'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
import orjson

from streams.core.errors import ShopstreamError

EventType = Literal[
    "view", "add_to_cart", "remove_from_cart", "purchase", "search", "session_start"
]
EVENT_TYPES: Final[frozenset[str]] = frozenset(get_args(EventType))
#: Types that name an item and therefore require ``item_id``.
ITEM_TYPES: Final[frozenset[str]] = frozenset(
    {"view", "add_to_cart", "remove_from_cart", "purchase"}
)

#: Timestamps outside [2000-01-01, 2100-01-01) are rejected as absurd.
MIN_TS_MS: Final = 946_684_800_000
MAX_TS_MS: Final = 4_102_444_800_000
MAX_ID_LEN: Final = 256
MAX_TEXT_LEN: Final = 1024
DEFAULT_MAX_BYTES: Final = 64 * 1024

_REQUIRED_STR: Final = ("event_id", "type", "user_id", "session_id")
_OPTIONAL_STR: Final = ("item_id", "category", "query")


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record, reduced to what processing needs (raw, not yet parsed)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class InvalidEvent(ShopstreamError):
    """A record that violates the contract. Not retriable: it goes to the dead-letter topic."""

    retriable = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Event:
    """One validated storefront event. ``ts_ms`` is UTC epoch milliseconds (event time)."""

    event_id: str
    type: EventType
    user_id: str
    session_id: str
    ts_ms: int
    item_id: str | None = None
    category: str | None = None
    price: float | None = None
    quantity: int | None = None
    query: str | None = None

    @property
    def ts(self) -> datetime:
        """Event time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC)

    def to_dict(self) -> dict[str, Any]:
        """The contract JSON object; ``ts`` is written as epoch milliseconds."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["ts"] = d.pop("ts_ms")
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_ts(value: object) -> int:
    """Normalise an ISO-8601 string with zone, or epoch milliseconds, to UTC epoch ms.

    >>> parse_ts("2024-03-01T09:00:00Z"), parse_ts(1709283600000)
    (1709283600000, 1709283600000)
    >>> parse_ts("2024-03-01T09:00:00")
    Traceback (most recent call last):
    ...
    streams.core.events.InvalidEvent: bad_ts: timestamp '2024-03-01T09:00:00' has no time zone
    """
    if isinstance(value, bool):
        raise InvalidEvent("bad_ts", f"timestamp must be a string or epoch ms, not {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidEvent("bad_ts", f"timestamp {value!r} is not finite")
        ms = int(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent("bad_ts", f"timestamp {value[:64]!r} is not ISO-8601") from None
        if dt.tzinfo is None:
            raise InvalidEvent("bad_ts", f"timestamp {value[:64]!r} has no time zone")
        ms = int(dt.timestamp() * 1000)
    else:
        raise InvalidEvent(
            "bad_ts", f"timestamp must be a string or epoch ms, not {type(value).__name__}"
        )
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidEvent("absurd_ts", f"timestamp {value!r} is outside 2000..2100")
    return ms


def _str_field(obj: dict[str, Any], name: str, *, required: bool, limit: int) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidEvent("missing_field", f"missing required field {name!r}")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(
            "wrong_type", f"field {name!r} must be a string, not {type(value).__name__}"
        )
    if required and not value:
        raise InvalidEvent("missing_field", f"field {name!r} is empty")
    if len(value) > limit:
        raise InvalidEvent("too_long", f"field {name!r} is longer than {limit} characters")
    return value


def _number(obj: dict[str, Any], name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(
            "wrong_type", f"field {name!r} must be a number, not {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise InvalidEvent("bad_number", f"field {name!r} is not finite")
    if value < 0:
        raise InvalidEvent("bad_number", f"field {name!r} is negative ({value})")
    return float(value)


def validate(obj: object) -> Event:
    """Validate a decoded JSON value against the contract."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not_object", f"expected a JSON object, got {type(obj).__name__}")
    for name in _REQUIRED_STR:
        _str_field(obj, name, required=True, limit=MAX_ID_LEN)
    etype = obj["type"]
    if etype not in EVENT_TYPES:
        raise InvalidEvent("unknown_type", f"unknown event type {etype[:64]!r}")
    if "ts" not in obj:
        raise InvalidEvent("missing_field", "missing required field 'ts'")
    item_id = _str_field(obj, "item_id", required=etype in ITEM_TYPES, limit=MAX_ID_LEN)
    quantity = _number(obj, "quantity")
    if quantity is not None and not quantity.is_integer():
        raise InvalidEvent("wrong_type", f"field 'quantity' must be an integer, not {quantity}")
    return Event(
        event_id=obj["event_id"],
        type=etype,
        user_id=obj["user_id"],
        session_id=obj["session_id"],
        ts_ms=parse_ts(obj["ts"]),
        item_id=item_id,
        category=_str_field(obj, "category", required=False, limit=MAX_ID_LEN),
        price=_number(obj, "price"),
        quantity=None if quantity is None else int(quantity),
        query=_str_field(obj, "query", required=False, limit=MAX_TEXT_LEN),
    )


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
_Opt = Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)] | None


class _Wire(msgspec.Struct):
    """The contract as msgspec checks it in C: a strict *subset* of what :func:`validate`
    accepts (e.g. no float ``ts`` or ``quantity``), with the same meaning. A record that
    does not fit is parsed again by the Python path, which accepts it or names the reason
    (tests/unit/test_events.py checks the two paths agree on generated records)."""

    event_id: _Id
    type: EventType
    user_id: _Id
    session_id: _Id
    ts: int | str
    item_id: _Opt = None
    category: _Opt = None
    price: Annotated[float, msgspec.Meta(ge=0)] | None = None
    quantity: Annotated[int, msgspec.Meta(ge=0, le=2**53)] | None = None  # exact as a float
    query: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LEN)] | None = None


_decode_wire = msgspec.json.Decoder(_Wire).decode


def parse_fast(raw: bytes) -> Event | None:
    """The event when ``raw`` fits the common well-formed shape, else ``None``.

    >>> parse_fast(b'{"event_id": "e1", "type": "view", "user_id": "u", "session_id": "s",'
    ...            b' "ts": 1709283600000, "item_id": "i"}').item_id
    'i'
    >>> parse_fast(b'{"event_id": "e1", "type": "view", "user_id": "u", "session_id": "s",'
    ...            b' "ts": 1709283600000}') is None  # a view needs an item: ask validate why
    True
    """
    try:
        w = _decode_wire(raw)
    except msgspec.MsgspecError:
        return None
    if not w.item_id and w.type in ITEM_TYPES:
        return None
    try:
        ts_ms = parse_ts(w.ts)
    except InvalidEvent:
        return None
    return Event(
        w.event_id, w.type, w.user_id, w.session_id, ts_ms,
        w.item_id, w.category, w.price, w.quantity, w.query,
    )  # fmt: skip


def parse_event(raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Event:
    """Parse one raw Kafka record value; raise :class:`InvalidEvent` with a reason if bad."""
    if not raw:
        raise InvalidEvent("empty", "record value is empty")
    if len(raw) > max_bytes:
        raise InvalidEvent("oversize", f"record is {len(raw)} bytes, limit is {max_bytes}")
    event = parse_fast(raw)
    return event if event is not None else parse_slow(raw)


def parse_slow(raw: bytes) -> Event:
    """orjson + :func:`validate`: every contract check in Python, with the reason."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("bad_utf8", "record value is not valid UTF-8") from None
        raise InvalidEvent("not_json", f"record value is not JSON ({exc})") from None
    return validate(obj)
