"""``shopstream import orders FILE.csv``: a shop's order history as contract events.

Three CSV shapes, told apart by the header (docs/storefront.md "Order import"):

* **order lines** ``order_id,customer_id,timestamp,item_id,quantity,price[,category]``: one
  ``purchase`` per line; the lines of an order share the session ``order-<order_id>``, so
  items bought together teach the similarity store;
* **order totals** ``user_id,timestamp,amount`` (the input of ``evaluate churn``): one
  ``purchase`` of the placeholder item :data:`TOTAL_ITEM` per row, price = amount (what the
  churn models need: when, how much); the placeholder is hidden from recommendations;
* **Online Retail** (UCI) ``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,
  CustomerID,Country`` (and Online Retail II's ``Invoice``, ``Price``, ``Customer ID``): order
  lines; cancellations (``C`` invoices, quantity ≤ 0), rows without a customer and negative
  prices are skipped and counted.

Times without a zone are read in ``tz`` (UTC by default); dates alone are midnight. Events
are sent in event-time order through the normal path (the events topic, keyed by user) with
stable event ids, so importing a file twice adds nothing the worker does not drop as a
duplicate. Rows that cannot be read are counted by reason, never sent.

>>> rows = read_rows(["user_id,timestamp,amount", "17850,2010-12-01,139.12",
...                   "17850,2010-12-01,22.2", "13047,2010-11-30,-5"])
>>> [(e["event_id"], e["item_id"], e["price"]) for _, e in rows.events]
[('order-17850-1291161600000-0', '-', 139.12), ('order-17850-1291161600000-1', '-', 22.2)]
>>> dict(rows.skipped), rows.shape
({'refund': 1}, 'totals')
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import orjson

from models.similarity import SimilarityStore
from streams.core.errors import InputError
from streams.core.events import MAX_ID_LEN, InvalidEvent, epoch_ms
from streams.core.settings import Settings
from streams.core.wire import parse_event
from streams.tools.replay import replay
from streams.worker.configs import rec_config
from streams.worker.runtime import redis_client

Shape = Literal["lines", "totals", "online_retail"]
#: The item of an order-totals row (no item is known): hidden from recommendations.
TOTAL_ITEM: Final = "-"
LINES: Final = ("order_id", "customer_id", "timestamp", "item_id", "quantity", "price")
TOTALS: Final = ("user_id", "timestamp", "amount")
#: Online Retail (and Online Retail II) column -> order-lines column.
RETAIL: Final = {
    "InvoiceNo": "order_id", "Invoice": "order_id", "CustomerID": "customer_id",
    "Customer ID": "customer_id", "InvoiceDate": "timestamp", "StockCode": "item_id",
    "Quantity": "quantity", "UnitPrice": "price", "Price": "price",
}  # fmt: skip
_RETAIL_FORMATS: Final = ("%m/%d/%Y %H:%M", "%m/%d/%y %H:%M", "%d/%m/%Y %H:%M")


class Skip(Exception):
    """A row that is not imported, with the reason it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def shape_of(header: Iterable[str]) -> Shape:
    """Which shape a header is.

    >>> shape_of(["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
    ...           "UnitPrice", "CustomerID", "Country"])
    'online_retail'
    """
    names = {h.strip() for h in header}
    if set(LINES) <= names:
        return "lines"
    if set(TOTALS) <= names:
        return "totals"
    if {"StockCode", "Quantity", "InvoiceDate"} <= names:
        return "online_retail"
    raise InputError(
        f"unknown columns {sorted(names)}: expected {','.join(LINES)}[,category], "
        f"{','.join(TOTALS)}, or the Online Retail columns (docs/storefront.md)"
    )


def parse_time(text: str, tz: tzinfo = UTC) -> int:
    """Epoch ms of an ISO date or date-time (a naive one in ``tz``), or of Online Retail's
    ``12/1/2010 8:26``.

    >>> parse_time("2010-12-01"), parse_time("12/1/2010 8:26"), parse_time("2010-12-01T08:26Z")
    (1291161600000, 1291191960000, 1291191960000)
    """
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text) if len(text) != 10 else datetime.combine(
            date.fromisoformat(text), datetime.min.time())  # fmt: skip
    except ValueError:
        for fmt in _RETAIL_FORMATS:
            try:
                dt = datetime.strptime(text, fmt)  # noqa: DTZ007 - the zone is set below
                break
            except ValueError:
                continue
        else:
            raise Skip("bad_timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return epoch_ms(dt)


def derived_id(*parts: str) -> str:
    """``order-<part>-<part>...``, the id of an event or session made from the row's ids;
    one longer than the contract's :data:`MAX_ID_LEN` (long order and item ids) is
    ``order-<digest>`` instead, so that a row of valid ids always gives valid ids.

    >>> derived_id("o1", "sku-2", "0"), derived_id("o" * 300, "0")
    ('order-o1-sku-2-0', 'order-he20f2b510126f736be7ff3fce9175e7f')
    """
    text = "-".join(("order", *parts))
    if len(text) <= MAX_ID_LEN:
        return text
    return "order-h" + hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


def _number(text: str | None, reason: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise Skip(reason) from None
    if not math.isfinite(value):
        raise Skip(reason)
    return value


@dataclass(slots=True)
class Rows:
    """The events of a file, in event-time order, and what was skipped."""

    shape: Shape = "lines"
    rows: int = 0
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    first_skipped_lines: list[int] = field(default_factory=list)


def _line_event(rec: dict[str, str], seen: Counter[str], tz: tzinfo) -> dict[str, Any]:
    order, user = (rec.get("order_id") or "").strip(), (rec.get("customer_id") or "").strip()
    item = (rec.get("item_id") or "").strip()
    if not user:
        raise Skip("no_customer")
    if not order or not item:
        raise Skip("no_order_or_item")
    quantity = _number(rec.get("quantity"), "bad_quantity")
    price = _number(rec.get("price"), "bad_price")
    if order.upper().startswith("C") or quantity <= 0:
        raise Skip("cancelled")
    if price < 0:
        raise Skip("negative_price")
    if not quantity.is_integer() or quantity >= 2**63:  # 2**63: no JSON integer carries it
        raise Skip("bad_quantity")
    n = seen[f"{order}\0{item}"]
    seen[f"{order}\0{item}"] += 1
    event = {"event_id": derived_id(order, item, str(n)), "type": "purchase", "user_id": user,
             "session_id": derived_id(order), "item_id": item, "quantity": int(quantity),
             "price": price, "ts": parse_time(rec.get("timestamp") or "", tz)}  # fmt: skip
    category = (rec.get("category") or "").strip()
    return event | {"category": category} if category else event


def _total_event(rec: dict[str, str], seen: Counter[str], tz: tzinfo) -> dict[str, Any]:
    user = (rec.get("user_id") or "").strip()
    if not user:
        raise Skip("no_customer")
    amount = _number(rec.get("amount"), "bad_amount")
    if amount < 0:
        raise Skip("refund")
    ts = parse_time(rec.get("timestamp") or "", tz)
    n = seen[f"{user}\0{ts}"]
    seen[f"{user}\0{ts}"] += 1
    order = derived_id(user, str(ts), str(n))
    return {"event_id": order, "type": "purchase", "user_id": user,
            "session_id": order, "item_id": TOTAL_ITEM, "quantity": 1,
            "price": amount, "ts": ts}  # fmt: skip


def _readable(rec: dict[str, str] | None) -> dict[str, str]:
    if rec is None:
        raise Skip("bad_csv")
    return rec


def read_rows(lines: Iterable[str], tz: tzinfo = UTC) -> Rows:
    """Every row of a CSV as a contract event (checked by the contract's own code), sorted
    by event time (file order among equal times); skipped rows counted by reason."""
    reader = csv.DictReader(iter(lines))
    out = Rows(shape=shape_of(reader.fieldnames or ()))
    seen: Counter[str] = Counter()
    make = _total_event if out.shape == "totals" else _line_event
    while True:
        try:
            rec: dict[str, str] | None = next(reader)
        except StopIteration:
            break
        except csv.Error:  # e.g. a field over csv.field_size_limit(): this row only
            rec = None
        out.rows += 1
        if rec is not None and out.shape == "online_retail":
            rec = {RETAIL.get(k.strip(), k): v for k, v in rec.items() if k is not None}
        try:
            event = make(_readable(rec), seen, tz)
            parse_event(orjson.dumps(event))
        except Skip as exc:
            out.skipped[exc.reason] += 1
        except InvalidEvent as exc:
            out.skipped[exc.reason] += 1
        else:
            out.events.append((reader.line_num, event))
            continue
        if len(out.first_skipped_lines) < 10:
            out.first_skipped_lines.append(reader.line_num)
    out.events.sort(key=lambda pair: pair[1]["ts"])  # stable: file order among equal times
    return out


@dataclass(slots=True)
class ImportSummary:
    shape: Shape
    rows: int
    events: int
    skipped: dict[str, int]
    customers: int
    orders: int
    first: str
    last: str
    seconds: float
    send_errors: int
    first_skipped_lines: list[int]

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"seconds": round(self.seconds, 3),
                               "events_per_s": round(self.events_per_s, 1)}  # fmt: skip


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


async def hide_total_item(settings: Settings) -> None:
    """Hide :data:`TOTAL_ITEM` from recommendations (what ``PUT /items/-`` does)."""
    redis = redis_client(settings.redis_url)
    try:
        store = SimilarityStore(redis, prefix=settings.redis_prefix, config=rec_config(settings))
        await store.set_hidden(TOTAL_ITEM, True)
    finally:
        await redis.aclose()


async def import_orders(
    settings: Settings, path: Path, *, tz: str = "UTC", limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:  # fmt: skip
    """Read, convert and send the file; ``limit``: the first N events in event time."""
    try:
        zone: tzinfo = UTC if tz == "UTC" else ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise InputError(f"unknown time zone {tz!r}") from exc
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = read_rows(fh, zone)
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 ({exc.reason})") from exc
    events = rows.events[:limit] if limit else rows.events
    if not events:
        raise InputError(f"{path}: no importable row ({dict(rows.skipped)} skipped)")
    if rows.shape == "totals":
        await hide_total_item(settings)
    total = len(events)
    records: Iterator[tuple[int, bytes | None, bytes | None]] = (
        (line, e["user_id"].encode(), orjson.dumps(e)) for line, e in events
    )
    started = time.perf_counter()
    sent = await replay(settings, path, records=records,
                        progress=(lambda n: progress(n, total)) if progress else None)  # fmt: skip
    return ImportSummary(
        shape=rows.shape, rows=rows.rows, events=sent.events, skipped=dict(rows.skipped),
        customers=len({e["user_id"] for _, e in events}),
        orders=len({e["session_id"] for _, e in events}),
        first=_day(events[0][1]["ts"]), last=_day(events[-1][1]["ts"]),
        seconds=time.perf_counter() - started, send_errors=sent.send_errors,
        first_skipped_lines=rows.first_skipped_lines,
    )  # fmt: skip
