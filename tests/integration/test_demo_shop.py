"""The demo shop in headless Chromium: the tracker sends the clicks to the collector, and the
recommendations it renders come from the worker and change with the clicks.

The store is first taught by a generated storefront history (its shoppers walk a category's
items in order), shifted to end an hour ago. Then Debian's ``chromium`` (Playwright) opens
``/demo/shop``, clicks a book, then a garden product, and checks that the rendered list is
exactly what ``GET /recommendations/{visitor}`` answered, that it changed between the clicks,
that it follows the garden click, and that the worker has the visitor's events. Saves
``test-artifacts/demo-shop.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import Page, Response, async_playwright

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from tests.support.worker import ADMIN_TOKEN, PUBLIC_KEY, WorkerProcess, produce

RENDERED = "document.querySelector('#recs').dataset.shopstreamItems || ''"


def history() -> list[dict[str, Any]]:
    events, _ = generate(users=150, seed=3, days=30)
    shift = int(time.time() * 1000) - 3_600_000 - events[-1]["ts"]
    return [{**e, "ts": e["ts"] + shift} for e in events]


def wait_processed(worker: WorkerProcess, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), worker.logs()
        if worker.get_json("/api/dashboard")["totals"]["events_in"] >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"{n} events not processed in {timeout}s:\n{worker.logs()}")


async def click_and_wait_change(page: Page, item_id: str, before: str) -> str:
    """Click a product; wait until the rendered recommendations differ from ``before`` and
    stay the same for a second (the page fetches again once the click is processed)."""
    await page.click(f"#products [data-item-id='{item_id}']")
    await page.wait_for_function(f"({RENDERED}) !== '' && ({RENDERED}) !== {before!r}",
                                 timeout=30_000)  # fmt: skip
    await page.wait_for_timeout(2500)
    return str(await page.evaluate(RENDERED))


async def test_demo_shop_renders_live_recommendations_in_chromium(
    settings: Settings, tmp_path: Path
) -> None:
    assert HAVE_CHROMIUM, "install Debian's chromium: apt-get install -y chromium"
    settings = settings.with_(public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN, demo_shop=True)
    await ensure_topics(settings)
    rows = history()
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, [(e["user_id"].encode(), orjson.dumps(e)) for e in rows])
        wait_processed(worker, len(rows))
        ARTIFACTS.mkdir(exist_ok=True)
        answers: list[Any] = []
        collected: list[Any] = []

        async def on_response(response: Response) -> None:
            if "/recommendations/" in response.url:
                answers.append(await response.json())
            elif "/v1/events" in response.url:
                collected.append(await response.json())

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
            )
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("response", on_response)
                await page.goto(worker.url("/demo/shop"), timeout=30_000)
                visitor = str(await page.evaluate("shopstream.user()"))
                after_book = await click_and_wait_change(page, "i00001", "")
                after_garden = await click_and_wait_change(page, "i03002", after_book)
                shown = await page.locator("#recs li").all_text_contents()
                await page.screenshot(path=str(ARTIFACTS / "demo-shop.png"), full_page=True)
            finally:
                await browser.close()
        profile = worker.get_json(f"/users/{visitor}")
    assert errors == []
    assert visitor.startswith("anon-")
    assert sum(c["accepted"] for c in collected) >= 3 and all(c["rejected"] == 0 for c in collected)
    last = answers[-1]
    assert last["user_id"] == visitor
    assert after_garden == " ".join(i["item_id"] for i in last["items"])  # rendered = answered
    assert after_book != after_garden
    assert any(i.startswith("i03") for i in after_garden.split()), after_garden
    assert len(shown) == len(last["items"]) >= 3 and "Garden" in " ".join(shown)
    assert profile["profile"]["n_events"] >= 3, profile  # session_start + two views
    assert (ARTIFACTS / "demo-shop.png").stat().st_size > 10_000
