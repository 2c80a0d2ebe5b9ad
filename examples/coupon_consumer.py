"""Example storefront consumer: turn ``shop.churn-alerts`` into coupons, exactly once per alert.

Alerts can be delivered more than once (Kafka is at-least-once); the coupon ledger is keyed by
``alert_id`` (``INSERT OR IGNORE``), so a redelivered alert never issues a second coupon. The
consumer commits its offsets only after the ledger write, so no alert is skipped either.
Alerts of the ``holdout`` group get no coupon: they are the control group against which the
coupons' uplift is measured (docs/marketing.md).

    python examples/coupon_consumer.py --ledger coupons.sqlite3 [--once]

>>> ledger = Ledger(":memory:")
>>> alert = {"alert_id": "a1", "user_id": "u1", "action": {"discount_pct": 15.0}}
>>> ledger.issue(alert), ledger.issue(alert)
(True, False)
>>> ledger.count()
1
>>> wants_coupon({"alert_id": "a2", "group": "holdout"}), wants_coupon(alert)
(False, True)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sqlite3
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.core.settings import Settings
from streams.kafka import client_options

log = logging.getLogger("coupons")


class Ledger:
    """Issued coupons, one row per alert."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS coupons (alert_id TEXT PRIMARY KEY, user_id TEXT,"
            " code TEXT, discount_pct REAL)"
        )

    def issue(self, alert: dict[str, Any]) -> bool:
        """Issue the alert's coupon; ``False`` if this alert already has one."""
        code = "SAVE-" + hashlib.sha256(alert["alert_id"].encode()).hexdigest()[:8].upper()
        discount = float(alert.get("action", {}).get("discount_pct", 10.0))
        with self.db:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO coupons VALUES (?, ?, ?, ?)",
                (alert["alert_id"], alert["user_id"], code, discount),
            )
        return cur.rowcount == 1

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM coupons").fetchone()[0])


def wants_coupon(alert: dict[str, Any]) -> bool:
    """Whether the alert gets a coupon: not if it is in the holdout group."""
    return alert.get("group") != "holdout"


async def run(ledger: Ledger, settings: Settings, once: bool) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic_churn_alerts,
        **client_options(settings),
        group_id=f"{settings.app_id}-coupons",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch and once:
                return
            for records in batch.values():
                for r in records:
                    alert = orjson.loads(r.value)
                    if not wants_coupon(alert):
                        log.info("alert %s is in the holdout: no coupon", alert["alert_id"])
                    elif ledger.issue(alert):
                        log.info("coupon for %s (alert %s)", alert["user_id"], alert["alert_id"])
                    else:
                        log.info("alert %s seen before: no second coupon", alert["alert_id"])
            await consumer.commit()
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", default="coupons.sqlite3")
    parser.add_argument("--once", action="store_true", help="stop when no alert arrives for 2 s")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    ledger = Ledger(args.ledger)
    asyncio.run(run(ledger, Settings.from_env(), args.once))
    log.info("%d coupons in the ledger", ledger.count())


if __name__ == "__main__":
    main()
