"""Segment / RudderStack calls mapped onto the contract, so a shop's existing tracking can
point at shopstream (the collector and ``shopstream replay`` accept them).

A call is recognised by its ``type`` (``track``, ``identify``, ``page``, ``screen``,
``group``, ``alias``) and, for ``identify``, the camel-case ``userId``/``anonymousId`` of the
spec. The e-commerce events of the spec (v2) map as follows; every other call is *ignored*
(answered, neither produced nor dead-lettered):

=========================================  =====================================================
``Product Viewed``, ``Product Clicked``    ``view`` of ``properties.product_id`` (or ``sku``)
``Product Added`` / ``Product Removed``    ``add_to_cart`` / ``remove_from_cart`` (``quantity``)
``Order Completed``                        one ``purchase`` per ``properties.products[]``
                                           (``properties.coupon``: their ``coupon_code``)
``Products Searched``                      ``search`` of ``properties.query``
``identify`` with both ids                 the collector's identify link
=========================================  =====================================================

``user_id`` is ``userId``, else ``anonymousId``; ``session_id`` is ``context.sessionId``
(RudderStack), else ``properties.session_id``, else ``anonymousId``, else the user id;
``ts`` is ``timestamp`` (else ``originalTimestamp``, ``sentAt``, ``receivedAt``);
``event_id`` is ``messageId`` (``-<n>`` per product of an order).

>>> m = from_segment({"type": "track", "event": "Product Viewed", "userId": "u1",
...     "messageId": "m1", "timestamp": "2024-03-01T10:00:00Z",
...     "properties": {"product_id": "sku-7", "category": "shoes", "price": 59}})
>>> m.events  # doctest: +NORMALIZE_WHITESPACE
[{'event_id': 'm1', 'type': 'view', 'user_id': 'u1', 'session_id': 'u1',
  'ts': '2024-03-01T10:00:00Z', 'item_id': 'sku-7', 'category': 'shoes', 'price': 59}]
>>> from_segment({"type": "page", "name": "Home", "userId": "u1"}).ignored
'page'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

from streams.core.events import InvalidEvent

CALL_TYPES: Final = frozenset({"track", "identify", "page", "screen", "group", "alias"})
TRACKED: Final = {
    "Product Viewed": "view", "Product Clicked": "view", "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart", "Order Completed": "purchase",
    "Products Searched": "search",
}  # fmt: skip
_TS_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")


@dataclass(slots=True)
class Mapped:
    """What one call becomes: contract events, an identify link, or ignored (with why)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    link: tuple[str, str] | None = None
    ignored: str | None = None


def is_segment(obj: object) -> TypeGuard[dict[str, Any]]:
    """Whether a decoded JSON value is a Segment/RudderStack call (not a contract event).

    >>> is_segment({"type": "identify", "anonymous_id": "a", "user_id": "c"})  # ours
    False
    >>> is_segment({"type": "identify", "anonymousId": "a", "userId": "c"})
    True
    >>> is_segment({"type": {}})  # any JSON value may come
    False
    """
    if not isinstance(obj, dict):
        return False
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in CALL_TYPES:
        return False
    return kind != "identify" or "userId" in obj or "anonymousId" in obj


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _product(props: dict[str, Any]) -> dict[str, Any]:
    """The contract fields of a spec product (absent ones left out)."""
    item = _text(props.get("product_id")) or _text(props.get("sku")) or _text(props.get("id"))
    out = {"item_id": item, "category": _text(props.get("category")),
           "price": props.get("price"), "quantity": props.get("quantity")}  # fmt: skip
    return {k: v for k, v in out.items() if v is not None}


def from_segment(call: dict[str, Any]) -> Mapped:
    """Map one call; :class:`InvalidEvent` when a mapped call lacks what the contract needs
    (the contract's own validation then checks each event)."""
    kind, user = call.get("type"), _text(call.get("userId"))
    anonymous = _text(call.get("anonymousId"))
    if kind == "identify":
        if user and anonymous and user != anonymous:
            return Mapped(link=(anonymous, user))
        return Mapped(ignored="identify without both userId and anonymousId")
    name = call.get("event") if isinstance(call.get("event"), str) else None
    if kind != "track" or name not in TRACKED:
        return Mapped(ignored=f"{kind} {name}" if kind == "track" else str(kind))
    uid = user or anonymous
    if uid is None:
        raise InvalidEvent("missing_field", "a call needs userId or anonymousId")
    message = _text(call.get("messageId"))
    if message is None:
        raise InvalidEvent("missing_field", "a call needs a messageId (the event id)")
    props, context = _dict(call.get("properties")), _dict(call.get("context"))
    session = (_text(context.get("sessionId")) or _text(props.get("session_id"))
               or anonymous or uid)  # fmt: skip
    ts = next((call[f] for f in _TS_FIELDS if call.get(f) is not None), None)
    base = {"event_id": message, "type": TRACKED[name], "user_id": uid, "session_id": session,
            "ts": ts}  # fmt: skip
    if name == "Products Searched":
        return Mapped(events=[base | {"query": props.get("query")}])
    if name != "Order Completed":
        return Mapped(events=[base | _product(props)])
    products = props.get("products")
    if not isinstance(products, list) or not products:
        raise InvalidEvent("missing_field", "Order Completed needs properties.products")
    coupon = _text(props.get("coupon"))  # the spec's order-level coupon code
    if coupon is not None:
        base["coupon_code"] = coupon
    return Mapped(events=[base | {"event_id": f"{message}-{n}"} | _product(_dict(p))
                          for n, p in enumerate(products)])  # fmt: skip
