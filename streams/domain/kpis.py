"""Business figures per event-time day: revenue, orders, AOV, the funnel, cart abandonment.

The day of an event is its UTC date (event time, never the wall clock), so a replay at any
speed yields the same figures. Per day:

* ``revenue``: the sum of ``price * quantity`` (``quantity`` 1 when absent) of purchases,
  kept in integer cents so sums are exact; ``items``: units sold; ``purchases``: lines;
* the **funnel**: sessions that viewed an item (``s_view``), added one to the cart
  (``s_cart``), bought (``s_purchase``) on that day; each session counts once per stage;
* ``orders``: sessions with a purchase on the day (``s_purchase``), so ``aov`` is revenue
  per order;
* ``cart_abandonment``: the share of carting sessions without a purchase on the day
  (``1 - s_cart_purchase / s_cart``);
* per category: ``views``, ``carts``, ``purchases``, ``revenue``;
* per recommendation arm (``A``/``B``, docs/recommendations.md): ``rec_shown`` (trigger
  events that got a recommendation), ``rec_clicks`` (distinct ``rec_id`` s that a view, cart
  or purchase of the day carried), ``rec_buys`` (distinct ``rec_id`` s a purchase carried)
  and ``rec_revenue`` (the revenue of purchases carrying a ``rec_id``).

Each event becomes one *record* (:func:`kpi_record`), which the worker applies in Redis in a
script fenced by the partition's offset (:mod:`streams.worker.kpis`): a redelivered batch
changes nothing. :func:`step` is the same arithmetic in Python (the reference the store is
tested against, and what the unit tests run).

>>> from streams.core.events import Event
>>> ev = lambda i, t, s, **kw: Event(event_id=f"e{i}", type=t, user_id="u1", session_id=s,
...                                  ts_ms=1_709_280_000_000 + i, **kw)
>>> state = KpiState()
>>> shoe = {"item_id": "a", "category": "shoes"}
>>> for i, e in enumerate([ev(0, "view", "s1", **shoe), ev(1, "add_to_cart", "s1", **shoe),
...                        ev(2, "purchase", "s1", price=19.99, quantity=2, **shoe),
...                        ev(3, "add_to_cart", "s2", item_id="b")]):
...     day = step(state, kpi_record(i, e))
>>> f = figures(day, state.days[day])
>>> f["revenue"], f["orders"], f["aov"], f["funnel"], f["cart_abandonment"]
(39.98, 1, 39.98, {'view': 1, 'cart': 2, 'purchase': 1}, 0.5)
>>> f["categories"]["shoes"]["revenue"], sorted(f["categories"])
(39.98, ['', 'shoes'])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from streams.core.events import Event

DAY_MS: Final = 86_400_000
#: Event types that count, and the funnel stage each one reaches.
STAGES: Final = {"view": "view", "add_to_cart": "cart", "purchase": "purchase"}
#: Per-category counters (field ``<name>@<category>``).
CATEGORY_FIELDS: Final = ("views", "carts", "purchases", "revenue")

#: Per-arm counters of recommendation feedback (field ``<name>@<arm>``).
REC_FIELDS: Final = ("rec_shown", "rec_clicks", "rec_buys", "rec_revenue")

#: ``[offset, day, type, session_id, category, cents, quantity, shown, rec_id, rec_arm]``:
#: what the store applies (``shown``: the arm of the recommendation this trigger event got,
#: ''; ``rec_arm``: the arm the event's ``rec_id`` is counted in, '' if none).
KpiRecord = list[Any]


def day_of(ts_ms: int) -> str:
    """The UTC date of an event time.

    >>> day_of(1_709_251_200_000), day_of(1_709_251_200_000 - 1)
    ('2024-03-01', '2024-02-29')
    """
    return _iso_day(ts_ms // DAY_MS)


@lru_cache(maxsize=1024)
def _iso_day(day: int) -> str:
    """The ISO date of a day number (cached: every event of a day asks for the same one)."""
    return datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()


def day_number(day: str) -> int:
    """Days since 1970-01-01 of an ISO date (the store's sort order).

    >>> day_number("1970-01-02")
    1
    """
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) // 86_400


def kpi_record(
    offset: int, event: Event, arm: str = "", *, shown: bool = False
) -> KpiRecord | None:
    """The record of one event, or ``None`` if its type counts for nothing. ``arm``: the
    experiment arm of the event's user ('' = none: its ``rec_id`` is not counted);
    ``shown``: the event triggered a published recommendation."""
    if event.type not in STAGES:
        return None
    qty = 1 if event.quantity is None else event.quantity
    cents = 0
    if event.type == "purchase" and event.price is not None:
        cents = round(event.price * qty * 100)
    rid = (event.rec_id or "") if arm else ""
    return [offset, day_of(event.ts_ms), event.type, event.session_id, event.category or "",
            cents, qty if event.type == "purchase" else 0, arm if shown else "", rid,
            arm if rid else ""]  # fmt: skip


@dataclass(slots=True)
class KpiState:
    """The reference state of :func:`step`: counters per day, sessions per day and stage."""

    days: dict[str, dict[str, int]] = field(default_factory=dict)
    sessions: dict[tuple[str, str], set[str]] = field(default_factory=dict)


def step(state: KpiState, record: KpiRecord) -> str:
    """Apply one record to ``state`` (what the store's script does); returns its day."""
    _, day, etype, session, category, cents, qty, shown, rid, arm = record
    c = state.days.setdefault(day, {})

    def add(name: str, n: int) -> None:
        c[name] = c.get(name, 0) + n

    def first(kind: str, member: str) -> bool:
        seen = state.sessions.setdefault((day, kind), set())
        new = member not in seen
        seen.add(member)
        return new

    stage = STAGES[etype]
    seen = state.sessions.setdefault((day, stage), set())
    if session not in seen:
        seen.add(session)
        add("s_" + stage, 1)
        other = {"cart": "purchase", "purchase": "cart"}.get(stage)
        if other and session in state.sessions.get((day, other), set()):
            add("s_cart_purchase", 1)
    name = {"view": "views", "cart": "carts", "purchase": "purchases"}[stage]
    add(name, 1)
    add(f"{name}@{category}", 1)
    if stage == "purchase":
        add("revenue", cents)
        add(f"revenue@{category}", cents)
        add("items", qty)
    if shown:
        add(f"rec_shown@{shown}", 1)
    if rid:
        if first("rclick", rid):
            add(f"rec_clicks@{arm}", 1)
        if stage == "purchase":
            add(f"rec_revenue@{arm}", cents)
            if first("rbuy", rid):
                add(f"rec_buys@{arm}", 1)
    return str(day)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _grouped(
    c: Mapping[str, int], fields: Sequence[str], *, money: str
) -> dict[str, dict[str, float]]:
    """``{group: {field: value}}`` of the ``field@group`` counters (``money`` in cents)."""
    out: dict[str, dict[str, float]] = {}
    for key, v in c.items():
        name, sep, group = key.partition("@")
        if sep and name in fields:
            out.setdefault(group, dict.fromkeys(fields, 0))[name] = v / 100 if name == money else v
    return out


def figures(day: str, counters: Mapping[str, int | str | bytes]) -> dict[str, Any]:
    """The figures of one day from its stored counters (cents become money)."""
    c = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in counters.items()}
    revenue, orders = c.get("revenue", 0) / 100, c.get("s_purchase", 0)
    carts = c.get("s_cart", 0)
    categories = _grouped(c, CATEGORY_FIELDS, money="revenue")
    recs = _grouped(c, REC_FIELDS, money="rec_revenue")
    abandoned = _ratio(carts - c.get("s_cart_purchase", 0), carts)
    return {
        "day": day,
        "revenue": revenue,
        "orders": orders,
        "aov": round(revenue / orders, 2) if orders else None,
        "items": c.get("items", 0),
        "purchases": c.get("purchases", 0),
        "views": c.get("views", 0),
        "carts": c.get("carts", 0),
        "funnel": {"view": c.get("s_view", 0), "cart": carts, "purchase": orders},
        "cart_purchase": c.get("s_cart_purchase", 0),
        "cart_abandonment": abandoned,
        "categories": categories,
        "recs": recs,
    }


def totals(days: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of a range of days (from :func:`figures`): sums, and ratios of sums.

    >>> t = totals([{"revenue": 10.0, "orders": 1, "items": 1, "views": 5,
    ...              "funnel": {"view": 2, "cart": 2, "purchase": 1}, "cart_purchase": 1}] * 2)
    >>> t["revenue"], t["aov"], t["cart_abandonment"], t["conversion"]
    (20.0, 10.0, 0.5, 0.5)
    """
    rows = list(days)
    revenue = round(math.fsum(r["revenue"] for r in rows), 2)
    orders = sum(r["orders"] for r in rows)
    funnel = {s: sum(r["funnel"][s] for r in rows) for s in ("view", "cart", "purchase")}
    carted = sum(r["cart_purchase"] for r in rows)
    return {
        "days": len(rows),
        "revenue": revenue,
        "orders": orders,
        "aov": round(revenue / orders, 2) if orders else None,
        "items": sum(r["items"] for r in rows),
        "funnel": funnel,
        "cart_abandonment": _ratio(funnel["cart"] - carted, funnel["cart"]),
        "conversion": _ratio(funnel["purchase"], funnel["view"]),
    }
