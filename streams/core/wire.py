"""The wire format of a contract event: bytes to :class:`~streams.core.events.Event`.

:func:`parse_event` tries msgspec's C decoder on the strict subset of the contract
(:class:`_Wire`) and falls back to the Python path (:func:`parse_slow`, then
:func:`~streams.core.events.validate`), which accepts the rest or names the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import orjson

from streams.core.events import (
    _CONTROL,
    DEFAULT_LIMITS,
    ITEM_TYPES,
    MAX_DEPTH,
    MAX_ID_LEN,
    MAX_TEXT_LEN,
    MAX_TS_MS,
    MAX_TS_TEXT,
    MIN_TS_MS,
    Event,
    EventType,
    InvalidEvent,
    Limits,
    parse_ts,
    validate,
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
    ts: Annotated[int, msgspec.Meta(ge=MIN_TS_MS, lt=MAX_TS_MS)] | Annotated[
        str, msgspec.Meta(max_length=MAX_TS_TEXT)
    ]
    item_id: _Opt = None
    category: _Opt = None
    price: Annotated[float, msgspec.Meta(ge=0)] | None = None
    quantity: Annotated[int, msgspec.Meta(ge=0, le=2**53)] | None = None  # exact as a float
    query: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LEN)] | None = None
    coupon_code: _Opt = None
    rec_id: _Opt = None


_decode_wire = msgspec.json.Decoder(_Wire).decode


def parse_fast(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Event | None:
    """The event when ``raw`` fits the common well-formed shape, else ``None``.

    Call it only on records whose nesting cannot exceed :data:`MAX_DEPTH` (msgspec recurses
    on the C stack up to Python's recursion limit: :func:`parse_event` counts brackets first).

    >>> parse_fast(b'{"event_id": "e1", "type": "view", "user_id": "u", "session_id": "s",'
    ...            b' "ts": 1709283600000, "item_id": "i"}').item_id
    'i'
    >>> parse_fast(b'{"event_id": "e1", "type": "view", "user_id": "u", "session_id": "s",'
    ...            b' "ts": 1709283600000}') is None  # a view needs an item: ask validate why
    True
    """
    try:
        w = _decode_wire(raw)
    except (msgspec.MsgspecError, RecursionError, ValueError):  # the slow path says why
        return None
    if not w.item_id and w.type in ITEM_TYPES:
        return None
    if not (
        w.event_id.isprintable() and w.user_id.isprintable() and w.session_id.isprintable()
        and (w.item_id is None or w.item_id.isprintable())
        and (w.category is None or w.category.isprintable())
        and (w.coupon_code is None or w.coupon_code.isprintable())
        and (w.rec_id is None or w.rec_id.isprintable())
        and (w.query is None or not _CONTROL.search(w.query))
    ):  # fmt: skip
        return None
    price, quantity = w.price, w.quantity
    if quantity is not None and quantity > limits.max_quantity:
        return None
    if price is not None and (
        price > limits.max_price or price * (quantity or 1) > limits.max_line_value
    ):
        return None
    try:
        ts_ms = parse_ts(w.ts)
    except InvalidEvent:
        return None
    return Event(
        w.event_id, w.type, w.user_id, w.session_id, ts_ms,
        w.item_id, w.category, w.price, w.quantity, w.query, w.coupon_code, w.rec_id,
    )  # fmt: skip


def parse_event(
    raw: bytes | None, *, max_bytes: int | None = None, limits: Limits = DEFAULT_LIMITS
) -> Event:
    """Parse one raw Kafka record value; raise :class:`InvalidEvent` with a reason if bad.

    ``max_bytes`` overrides ``limits.max_bytes``.

    >>> deep = b'{"x":' * 40 + b'1' + b'}' * 40
    >>> parse_event(deep)
    Traceback (most recent call last):
    ...
    streams.core.events.InvalidEvent: too_deep: record nests deeper than 16 levels
    """
    if not raw:
        raise InvalidEvent("empty", "record value is empty")
    limit = limits.max_bytes if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise InvalidEvent("oversize", f"record is {len(raw)} bytes, limit is {limit}")
    # Brackets bound the nesting depth (those inside strings only over-count): a record
    # with few of them cannot make msgspec recurse deeply. The rest take the slow path,
    # whose decoder (orjson) stops at 1024 levels by itself; the depth is checked there.
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        event = parse_fast(raw, limits)
        if event is not None:
            return event
    return parse_slow(raw, limits)


def parse_slow(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Event:
    """orjson + :func:`validate`: every contract check in Python, with the reason."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("bad_utf8", "record value is not valid UTF-8") from None
        msg = str(exc)
        if "depth" in msg:
            raise InvalidEvent("too_deep", f"record nests deeper than {MAX_DEPTH} levels") from None
        if "infinity" in msg:  # valid JSON, but a number no double can hold
            raise InvalidEvent("bad_number", f"a number is out of range ({msg})") from None
        raise InvalidEvent("not_json", f"record value is not JSON ({msg})") from None
    if depth(obj) > MAX_DEPTH:
        raise InvalidEvent("too_deep", f"record nests deeper than {MAX_DEPTH} levels")
    return validate(obj, limits)


def depth(obj: object) -> int:
    """Nesting depth of a decoded JSON value, without recursion (a scalar is 0).

    >>> depth(1), depth({"a": [1, {"b": []}]}), depth([[[]]] * 3)
    (0, 4, 3)
    """
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:  # deeper is rejected anyway: no need to walk further
            stack.extend((child, level + 1) for child in children)
    return deepest
