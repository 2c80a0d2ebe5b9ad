"""The input contract of ``shop.events``: raw records, typed events and strict validation.

Every record a storefront publishes is parsed by :func:`streams.core.wire.parse_event`. A
valid record becomes an immutable :class:`Event` with its timestamp normalised to UTC epoch
milliseconds; an invalid one raises :class:`InvalidEvent` whose ``reason`` is a short
machine-readable code and whose ``detail`` says what exactly was wrong. The agent sends the
original bytes of an invalid record to the dead-letter topic with that reason in the headers.

Hostile input is bounded before anything is converted (docs/security.md, "Input limits"):
the record's size, its nesting depth (:data:`MAX_DEPTH`, counted on the bytes before a
decoder recurses), string lengths, the range of every number (a 4,300-digit integer is a
``bad_ts``/``bad_number``, never an ``OverflowError``), upper bounds of price, quantity and
their product (:class:`Limits`), and the characters of ids (printable, so no NUL, no
separator of the Redis store and no control character can reach a key or a log line).
Unknown fields are ignored (forward compatible), but they count towards size and depth.

>>> from streams.core.wire import parse_event
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
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args

import msgspec
import orjson

from streams.core.errors import ShopstreamError
from streams.core.settings import Settings

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
#: Longest ISO-8601 ``ts`` string parsed (checked before parsing).
MAX_TS_TEXT: Final = 64
#: Deepest nesting of arrays/objects in a record (the contract itself is flat: depth 1).
MAX_DEPTH: Final = 16
#: C0 and C1 control characters: never accepted in free text (``query``).
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")

_REQUIRED_STR: Final = ("event_id", "type", "user_id", "session_id")
_OPTIONAL_STR: Final = ("item_id", "category", "query", "coupon_code", "rec_id")


class Record(msgspec.Struct, frozen=True, gc=False):
    """One consumed Kafka record, reduced to what processing needs (raw, not yet parsed).
    Immutable and built in C, like :class:`Event`.

    ``timestamp_ms`` is the Kafka record timestamp (-1: unknown), the clock event time is
    checked against (:func:`streams.worker.intake.split`); ``incarnation`` names the topic's
    identity (the start of its Kafka topic id; "" unknown), so that an offset fence knows
    where its offset came from (:attr:`fence_key`, :attr:`source`).

    >>> r = Record("shop.events", 2, 7, b"u", b"{}", incarnation="f689bbe2")
    >>> r.fence_key, r.source
    ('f689bbe2:2', 'shop.events@f689bbe2')
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = -1
    incarnation: str = ""

    @property
    def fence_key(self) -> str:
        """Where the offset comes from, for a user's fence: incarnation and partition."""
        return f"{self.incarnation}:{self.partition}"

    @property
    def source(self) -> str:
        """The topic with its incarnation (the similarity store's fence is per source and
        partition)."""
        return f"{self.topic}@{self.incarnation}" if self.incarnation else self.topic


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Upper bounds of a valid record; the values are settings (:meth:`from_settings`).

    >>> Limits.from_settings(Settings()).max_price == Settings().max_price
    True
    """

    max_bytes: int
    max_price: float
    max_quantity: int
    max_line_value: float

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            max_bytes=s.max_event_bytes, max_price=s.max_price, max_quantity=s.max_quantity,
            max_line_value=s.max_line_value,
        )  # fmt: skip


DEFAULT_LIMITS: Final = Limits.from_settings(Settings())


def safe_text(text: str, limit: int = 300) -> str:
    r"""``text`` (cut to ``limit`` characters) with every non-printable character escaped,
    for log lines and headers: a record can never forge a line or a terminal sequence.

    >>> print(safe_text("u1\nERROR forged\x1b[31m"), safe_text("caf\u00e9 \u202e"))
    u1\nERROR forged\x1b[31m café \u202e
    """
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InvalidEvent(ShopstreamError):
    """A record that violates the contract. Not retriable: it goes to the dead-letter topic."""

    retriable = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Event(msgspec.Struct, frozen=True, gc=False):
    """One validated storefront event. ``ts_ms`` is UTC epoch milliseconds (event time).

    Immutable, like a frozen dataclass (same constructor, fields, equality, hash and repr;
    :func:`msgspec.structs.replace` for a changed copy), but built in C: a frozen slots
    dataclass sets each of its 12 fields through ``object.__setattr__``, ~2.7 µs an event
    against ~0.15 (docs/performance.md, "Tenth round"). Not tracked by the garbage
    collector: it holds strings and numbers only.
    """

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
    #: a purchase paid with a coupon (its code): counts as the redemption of the customer's
    #: churn coupon in an alert's outcome (streams.domain.outcomes)
    coupon_code: str | None = None
    #: the ``rec_id`` of a recommendation this event followed (a click on it, or a cart or
    #: purchase it led to): counted per experiment arm in the business figures
    rec_id: str | None = None

    @property
    def ts(self) -> datetime:
        """Event time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC)

    def to_dict(self) -> dict[str, Any]:
        """The contract JSON object; ``ts`` is written as epoch milliseconds."""
        d = {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
        d["ts"] = d.pop("ts_ms")
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def epoch_ms(dt: datetime) -> int:
    """Epoch milliseconds of a zone-aware datetime, exactly: ``int(dt.timestamp() * 1000)``
    loses a millisecond to float rounding for some times after 2038.

    >>> t = datetime.fromisoformat("2039-07-06T01:24:33.693+00:00")
    >>> epoch_ms(t), int(t.timestamp() * 1000)
    (2193528273693, 2193528273692)
    """
    return (dt - _EPOCH) // _MS


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
    if isinstance(value, int):  # compared as an int: no float conversion of a huge one
        if not MIN_TS_MS <= value < MAX_TS_MS:
            raise InvalidEvent("absurd_ts", f"timestamp {_short(value)} is outside 2000..2100")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent("bad_ts", f"timestamp {value!r} is not finite")
        ms = int(value)
    elif isinstance(value, str):
        if len(value) > MAX_TS_TEXT:
            raise InvalidEvent("bad_ts", f"timestamp text is longer than {MAX_TS_TEXT}")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent("bad_ts", f"timestamp {value!r} is not ISO-8601") from None
        if dt.tzinfo is None:
            raise InvalidEvent("bad_ts", f"timestamp {value!r} has no time zone")
        try:
            ms = epoch_ms(dt)
        except (OverflowError, ValueError):  # a zone offset pushing year 9999 past the end
            raise InvalidEvent("absurd_ts", f"timestamp {value!r} is out of range") from None
    else:
        raise InvalidEvent(
            "bad_ts", f"timestamp must be a string or epoch ms, not {type(value).__name__}"
        )
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidEvent("absurd_ts", f"timestamp {value!r} is outside 2000..2100")
    return ms


def _short(value: int) -> str:
    """An int for a message, without converting a huge one to text in full.

    >>> _short(5), _short(10**400)
    ('5', 'an integer of 401 digits')
    """
    if -(10**18) < value < 10**18:
        return str(value)
    digits = len(str(abs(value))) if value.bit_length() < 14_000 else "over 4,000"
    return f"an integer of {digits} digits"


def _str_field(
    obj: dict[str, Any], name: str, *, required: bool, limit: int, text: bool = False
) -> str | None:
    """A string field: type, length (before anything else), then its characters: ids must
    be printable (:meth:`str.isprintable`), free ``text`` must hold no control character."""
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
    if _CONTROL.search(value) if text else not value.isprintable():
        bad = next(c for c in value if (_CONTROL.match(c) if text else not c.isprintable()))
        raise InvalidEvent(
            "bad_chars", f"field {name!r} holds the non-printable character {bad!r}"
        )
    return value


def _number(obj: dict[str, Any], name: str, upper: float) -> float | None:
    """A number in ``[0, upper]``; an int is compared as an int (no overflow)."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(
            "wrong_type", f"field {name!r} must be a number, not {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent("bad_number", f"field {name!r} is not finite")
    if value < 0:
        raise InvalidEvent("bad_number", f"field {name!r} is negative")
    if value > upper:
        raise InvalidEvent("bad_number", f"field {name!r} is above its limit {upper:g}")
    return float(value)


def validate(obj: object, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Validate a decoded JSON value against the contract and ``limits``."""
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
    quantity = _number(obj, "quantity", limits.max_quantity)
    if quantity is not None and not quantity.is_integer():
        raise InvalidEvent("wrong_type", f"field 'quantity' must be an integer, not {quantity}")
    price = _number(obj, "price", limits.max_price)
    if price is not None and price * (quantity or 1) > limits.max_line_value:
        raise InvalidEvent(
            "bad_number", f"price x quantity is above its limit {limits.max_line_value:g}"
        )
    return Event(
        event_id=obj["event_id"],
        type=etype,
        user_id=obj["user_id"],
        session_id=obj["session_id"],
        ts_ms=parse_ts(obj["ts"]),
        item_id=item_id,
        category=_str_field(obj, "category", required=False, limit=MAX_ID_LEN),
        price=price,
        quantity=None if quantity is None else int(quantity),
        query=_str_field(obj, "query", required=False, limit=MAX_TEXT_LEN, text=True),
        coupon_code=_str_field(obj, "coupon_code", required=False, limit=MAX_ID_LEN),
        rec_id=_str_field(obj, "rec_id", required=False, limit=MAX_ID_LEN),
    )
