"""The collector's pure part: a ``POST /v1/events`` body in, one verdict per element out.

The body is a JSON array (or Segment's ``{"batch": [...]}``). Each element is a contract
event (validated by the very code the worker's intake runs,
:func:`streams.core.events.parse_event`, on the element's JSON), an ``identify`` call that
links a visitor's anonymous id to the customer id it logged in as (:func:`parse_identify`),
or a Segment/RudderStack call (:mod:`streams.domain.segment`: mapped onto the contract, then
validated the same way, or ignored). A body that is not a JSON array, too large or with
too many elements is refused as a whole (:class:`BodyError`); otherwise every element gets
its own verdict, and bad elements never cost good ones.

>>> body = (b'[{"event_id":"e1","type":"view","user_id":"u1","session_id":"s1",'
...         b'"item_id":"i1","ts":1709283600000}, {"type":"teleport"},'
...         b' {"type":"identify","anonymous_id":"a-1","user_id":"c-9"}]')
>>> [(v.index, v.status, v.reason) for v in parse_body(body, max_events=10, max_bytes=10_000)]
[(0, 'accepted', None), (1, 'rejected', 'missing_field'), (2, 'identify', None)]
>>> parse_body(b'{"not": "an array"}', max_events=10, max_bytes=10_000)
Traceback (most recent call last):
...
streams.domain.collect.BodyError: not_array: the body must be a JSON array of events
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from streams.core.errors import ShopstreamError
from streams.core.events import MAX_ID_LEN, Event, InvalidEvent
from streams.core.wire import parse_event
from streams.domain.segment import from_segment, is_segment

Status = Literal["accepted", "rejected", "identify", "ignored"]
IDENTIFY: Final = "identify"


class BodyError(ShopstreamError):
    """The request as a whole cannot be read: HTTP ``status`` with a machine ``reason``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of one element of the body.

    ``raw`` is the element as JSON (what goes to the DLQ when rejected); ``events`` the
    validated events when accepted (several for a Segment ``Order Completed``); ``link`` the
    ``(anonymous_id, customer_id)`` of an identify call.
    """

    index: int
    status: Status
    raw: bytes
    events: tuple[Event, ...] = ()
    link: tuple[str, str] | None = None
    reason: str | None = None
    detail: str | None = None

    def answer(self) -> dict[str, Any]:
        """This element's part of the HTTP answer."""
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if len(self.events) == 1:
            out["event_id"] = self.events[0].event_id
        elif self.events:
            out["event_ids"] = [e.event_id for e in self.events]
        if self.link is not None:
            out["anonymous_id"], out["user_id"] = self.link
        if self.reason is not None:
            out["reason"] = self.reason
        if self.detail is not None:
            out["detail"] = self.detail
        return out


def _id(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent("missing_field", f"identify needs a non-empty string {name!r}")
    if len(value) > MAX_ID_LEN:
        raise InvalidEvent("too_long", f"field {name!r} is longer than {MAX_ID_LEN} characters")
    return value


def parse_identify(obj: dict[str, Any]) -> tuple[str, str]:
    """``(anonymous_id, customer_id)`` of ``{"type": "identify", "anonymous_id", "user_id"}``.

    >>> parse_identify({"type": "identify", "anonymous_id": "a-1", "user_id": "c-9"})
    ('a-1', 'c-9')
    >>> parse_identify({"type": "identify", "anonymous_id": "a-1", "user_id": "a-1"})
    Traceback (most recent call last):
    ...
    streams.core.events.InvalidEvent: same_id: anonymous_id and user_id are the same
    """
    anonymous, customer = _id(obj, "anonymous_id"), _id(obj, "user_id")
    if anonymous == customer:
        raise InvalidEvent("same_id", "anonymous_id and user_id are the same")
    return anonymous, customer


def parse_element(index: int, element: object, max_bytes: int) -> Verdict:
    """One element of the array: an event, an identify call, or rejected with the reason."""
    try:
        raw = orjson.dumps(element)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels)
        return Verdict(index, "rejected", b"", reason="too_deep", detail="nested too deeply")
    try:
        if is_segment(element):
            return _segment(index, element, raw, max_bytes)
        if isinstance(element, dict) and element.get("type") == IDENTIFY:
            return Verdict(index, "identify", raw, link=parse_identify(element))
        return Verdict(index, "accepted", raw, events=(parse_event(raw, max_bytes=max_bytes),))
    except InvalidEvent as exc:
        return Verdict(index, "rejected", raw, reason=exc.reason, detail=exc.detail)


def _segment(index: int, call: dict[str, Any], raw: bytes, max_bytes: int) -> Verdict:
    """A Segment/RudderStack call (:mod:`streams.domain.segment`)."""
    mapped = from_segment(call)
    if mapped.link is not None:
        return Verdict(index, "identify", raw, link=mapped.link)
    if mapped.ignored is not None:
        return Verdict(index, "ignored", raw, detail=mapped.ignored[:200])
    events = tuple(parse_event(orjson.dumps(e), max_bytes=max_bytes) for e in mapped.events)
    return Verdict(index, "accepted", raw, events=events)


def parse_body(body: bytes, *, max_events: int, max_bytes: int) -> list[Verdict]:
    """Every element's verdict; :class:`BodyError` when the body itself is unusable.

    ``max_bytes`` bounds each element as the worker bounds each record
    (``SHOPSTREAM_MAX_EVENT_BYTES``); the body's own size is bounded by the caller.
    """
    if not body.strip():
        raise BodyError(400, "empty", "the body is empty: send a JSON array of events")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, "not_json", f"the body is not JSON ({str(exc)[:200]})") from None
    if isinstance(value, dict) and isinstance(value.get("batch"), list):
        value = value["batch"]  # Segment's and RudderStack's batch call
    if not isinstance(value, list):
        raise BodyError(400, "not_array", "the body must be a JSON array of events")
    if len(value) > max_events:
        raise BodyError(
            413, "too_many_events", f"{len(value)} events in one request, at most {max_events}"
        )
    return [parse_element(i, element, max_bytes) for i, element in enumerate(value)]


class TokenBuckets:
    """Per-client rate limit: ``rate`` events per second, bursts up to ``burst``; the
    ``max_clients`` most recently seen clients are remembered (bounded memory).

    >>> b = TokenBuckets(rate=10, burst=20, max_clients=2)
    >>> b.take("1.2.3.4", 20, now=0.0), b.take("1.2.3.4", 5, now=0.0)
    (0.0, 0.5)
    >>> b.take("1.2.3.4", 5, now=0.5)  # 5 tokens came back in half a second
    0.0
    """

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, n: int, now: float) -> float:
        """Take ``n`` tokens: 0.0 when allowed, else the seconds to wait (nothing is taken)."""
        if self.rate <= 0:
            return 0.0
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if n > tokens:
            wait = (n - tokens) / self.rate if n <= self.burst else float("inf")
        else:
            tokens -= n
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait
