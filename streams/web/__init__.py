"""What the worker serves over HTTP: the API (:mod:`.api`, answers from :mod:`.queries`, for
one user from its owner :mod:`.owner`), the shop owner's dashboard with ``/metrics``
(:mod:`.dashboard`), the business figures ``/kpis`` and ``/campaigns`` (:mod:`.business`),
the collector ``POST /v1/events`` (:mod:`.collector`), the tracker
and the demo shop (:mod:`.storefront`), all behind the access guard (:mod:`.guard`: Host,
CORS, tokens) and described by :mod:`.openapi`."""

from __future__ import annotations

from typing import cast

from faust.web.drivers import aiohttp as aiohttp_driver

from streams.patches.webpages import without_builtin_pages
from streams.web import api, business, collector, dashboard, guard, storefront
from streams.worker.batch import BatchProcessor
from streams.worker.context import ShopApp


def register(shop: ShopApp, processor: BatchProcessor) -> None:
    """Add every view behind the guard; the processor is handed in, not read from a
    late-bound field."""
    web = cast(aiohttp_driver.Web, shop.app.web)  # Faust's default (and our) web driver
    without_builtin_pages(shop.app)
    web.web_app.middlewares.append(guard.middleware(guard.Policy.from_settings(shop.settings)))
    api.register(shop, processor)
    dashboard.register(shop, shop.telemetry)
    business.register(shop)
    collector.register(shop)
    storefront.register(shop)
