"""What a storefront's pages load from the worker: ``GET /tracker.js`` (the browser
tracker, docs/storefront.md) and ``GET /demo/shop`` (a demo storefront that uses it, served
only with ``SHOPSTREAM_DEMO_SHOP`` on; ``make demo`` turns it on).

The tracker is written readable in ``static/tracker.js`` and served without its comments and
indentation (:func:`minify`), well under 5 KB.

>>> len(tracker()) < 5 * 1024
True
>>> minify("  // a comment\\n  var a = 1; // kept: not a whole line\\n\\n  f(a);\\n")
'var a = 1; // kept: not a whole line\\nf(a);\\n'
"""

from __future__ import annotations

import functools
import html
from importlib import resources
from typing import Any, Final

import orjson

from streams.worker.context import ShopApp

#: The demo's catalogue: ids of :mod:`streams.tools.generate` (``i{category:02d}{j:03d}``),
#: whose generated shoppers walk a category's items in order, so ``make demo``'s replay
#: teaches the store which items go together.
DEMO_CATEGORIES: Final = ("books", "music", "games", "garden")
DEMO_ITEMS_PER_CATEGORY: Final = 6
CACHE: Final = {"Cache-Control": "public, max-age=300"}


def minify(source: str) -> str:
    """Drop whole-line ``//`` comments, indentation and blank lines (strings never start a
    line in our source, so this is safe for it)."""
    lines = (line.strip() for line in source.splitlines())
    return "".join(f"{line}\n" for line in lines if line and not line.startswith("//"))


def _static(name: str) -> str:
    return resources.files("streams.web").joinpath(f"static/{name}").read_text("utf-8")


@functools.cache
def tracker() -> str:
    """The tracker as served."""
    return minify(_static("tracker.js"))


def catalogue() -> list[dict[str, Any]]:
    """The demo shop's products.

    >>> c = catalogue()
    >>> len(c), c[0]
    (24, {'item_id': 'i00000', 'name': 'Books no. 1', 'category': 'books', 'price': 12.0})
    """
    return [
        {"item_id": f"i{c:02d}{j:03d}", "name": f"{name.title()} no. {j + 1}",
         "category": name, "price": float(12 + 7 * c + 3 * j)}
        for c, name in enumerate(DEMO_CATEGORIES) for j in range(DEMO_ITEMS_PER_CATEGORY)
    ]  # fmt: skip


def demo_page(public_key: str) -> str:
    """The demo shop's HTML with the public key and the catalogue filled in."""
    products = orjson.dumps(catalogue()).decode().replace("</", "<\\/")
    return (
        _static("demo_shop.html")
        .replace("{{PUBLIC_KEY}}", html.escape(public_key, quote=True))
        .replace("{{PRODUCTS}}", products)
    )


def register(shop: ShopApp) -> None:
    """Add ``/tracker.js`` and ``/demo/shop`` (404 unless the demo shop is on)."""
    settings = shop.settings

    @shop.app.page("/tracker.js")
    async def tracker_js(web: Any, request: Any) -> Any:
        return web.text(tracker(), content_type="application/javascript", headers=dict(CACHE))

    @shop.app.page("/demo/shop")
    async def demo_shop(web: Any, request: Any) -> Any:
        if not settings.demo_shop:
            return web.json(
                {"error": "the demo shop is off (SHOPSTREAM_DEMO_SHOP=1, or make demo)"},
                status=404,
            )
        return web.html(demo_page(settings.public_key))
