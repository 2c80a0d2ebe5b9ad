"""Order import (streams/tools/import_orders.py): the three CSV shapes become contract
purchases in event-time order with stable ids; unusable rows are counted by reason."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.core.errors import InputError
from streams.core.settings import Settings
from streams.core.wire import parse_event
from streams.tools.import_orders import TOTAL_ITEM, import_orders, read_rows, shape_of

LINES = """order_id,customer_id,timestamp,item_id,quantity,price,category
o2,c1,2024-03-02T10:00:00+01:00,sku-1,1,10.5,shoes
o1,c2,2024-03-01 09:00:00,sku-2,2,3,
o1,c2,2024-03-01 09:00:00,sku-3,1,4,books
o1,c2,2024-03-01 09:00:00,sku-2,1,3,
C9,c2,2024-03-03,sku-2,1,3,
o3,,2024-03-03,sku-2,1,3,
o4,c3,yesterday,sku-2,1,3,
o5,c3,2024-03-03,sku-2,1.5,3,
o6,c3,2024-03-03,sku-2,1,-3,
"""
RETAIL = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom
536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom
C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527,United Kingdom
536414,22139,,56,12/1/2010 11:52,0,,United Kingdom
536366,22633,HAND WARMER,6,12/1/2010 8:28,1.85,17850,United Kingdom
"""
RETAIL_II = """Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
489434,85048,LED BULB,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom
"""


def test_order_lines_become_purchases_in_event_time_order() -> None:
    rows = read_rows(LINES.splitlines())
    assert rows.shape == "lines" and rows.rows == 9
    events = [e for _, e in rows.events]
    assert [e["event_id"] for e in events] == [
        "order-o1-sku-2-0", "order-o1-sku-3-0", "order-o1-sku-2-1", "order-o2-sku-1-0"]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    first, last = events[0], events[-1]
    assert (first["user_id"], first["session_id"], first["quantity"], first["price"]) == (
        "c2", "order-o1", 2, 3.0)  # fmt: skip
    assert "category" not in first and events[1]["category"] == "books"
    assert last["ts"] == 1709370000000  # 10:00+01:00 is 09:00 UTC
    assert dict(rows.skipped) == {"cancelled": 1, "no_customer": 1, "bad_timestamp": 1,
                                  "bad_quantity": 1, "negative_price": 1}  # fmt: skip
    assert rows.first_skipped_lines == [6, 7, 8, 9, 10]
    for e in events:  # every event is what the worker accepts
        assert parse_event(orjson.dumps(e)).type == "purchase"


def test_ids_are_stable_so_a_second_import_is_a_duplicate() -> None:
    assert read_rows(LINES.splitlines()).events == read_rows(LINES.splitlines()).events


def test_online_retail_columns() -> None:
    rows = read_rows(RETAIL.splitlines())
    assert rows.shape == "online_retail"
    assert [(e["item_id"], e["session_id"], e["ts"]) for _, e in rows.events] == [
        ("85123A", "order-536365", 1291191960000), ("71053", "order-536365", 1291191960000),
        ("22633", "order-536366", 1291192080000)]  # fmt: skip
    assert dict(rows.skipped) == {"cancelled": 1, "no_customer": 1}
    [(_, e)] = read_rows(RETAIL_II.splitlines()).events
    assert (e["user_id"], e["item_id"], e["price"]) == ("13085.0", "85048", 6.95)


def test_order_totals_and_time_zone() -> None:
    from zoneinfo import ZoneInfo

    text = "user_id,timestamp,amount\n7,2011-06-01 10:00,5\n7,2011-06-01 10:00,6\n8,bad,1\n"
    rows = read_rows(text.splitlines(), ZoneInfo("Europe/London"))
    assert rows.shape == "totals" and dict(rows.skipped) == {"bad_timestamp": 1}
    assert {e["item_id"] for _, e in rows.events} == {TOTAL_ITEM}
    assert [e["ts"] for _, e in rows.events] == [1306918800000] * 2  # 10:00 BST = 09:00 UTC
    assert len({e["event_id"] for _, e in rows.events}) == 2


def test_unknown_columns_are_refused_naming_the_shapes() -> None:
    with pytest.raises(InputError, match="order_id,customer_id"):
        shape_of(["a", "b"])


async def test_a_file_with_nothing_importable_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("user_id,timestamp,amount\n,2011-01-01,3\n")
    with pytest.raises(InputError, match="no importable row"):
        await import_orders(Settings(), path)


def test_the_command_refuses_settings_that_publish_stale_alerts(tmp_path: Path) -> None:
    from tests.unit.cli.test_failures import one_line, run

    path = tmp_path / "o.csv"
    path.write_text(LINES)
    proc = run(["import", "orders", str(path)], tmp_path,
               SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS="0")  # fmt: skip
    assert proc.returncode == 2
    assert "SHOPSTREAM_CHURN_ALERT_MAX_AGE_DAYS=0" in one_line(proc)
    proc = run(["import", "orders", str(tmp_path / "missing.csv")], tmp_path)
    assert "cannot open" in one_line(proc) and proc.returncode == 2
