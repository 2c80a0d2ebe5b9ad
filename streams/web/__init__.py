"""What the worker serves over HTTP: the API (:mod:`.api`, answers from :mod:`.queries`) and
the shop owner's dashboard with ``/metrics`` (:mod:`.dashboard`)."""

from __future__ import annotations

from streams.web import api, dashboard
from streams.worker.batch import BatchProcessor
from streams.worker.context import ShopApp


def register(shop: ShopApp, processor: BatchProcessor) -> None:
    """Add every view; the processor is handed in, not read from a late-bound field."""
    api.register(shop, processor)
    dashboard.register(shop, shop.telemetry)
