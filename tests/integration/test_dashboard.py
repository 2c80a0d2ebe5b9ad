"""The live dashboard in headless Chromium: the charts render with data from a real replay.

Starts the real worker (with tokens: the browser logs in with the admin token, HTTP Basic),
replays a generated storefront (plus a bot), opens ``/dashboard`` in Debian's ``chromium``
driven by Playwright, checks that the charts and tables are drawn with data, and saves
``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import async_playwright

from streams.core.settings import Settings
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from tests.support.worker import ADMIN_TOKEN, PUBLIC_KEY, WorkerProcess, produce


def storefront() -> list[dict[str, Any]]:
    """A generated shop with a crawler bot that views 200 items 0.2 s apart."""
    events, _ = generate(users=80, seed=21, days=30)
    t0 = events[len(events) // 2]["ts"]
    bot = [
        {"event_id": f"bot-{i}", "type": "view", "user_id": "bot-1", "session_id": "bot-s",
         "item_id": f"zz{i:03d}", "ts": t0 + i * 200}
        for i in range(200)
    ]  # fmt: skip
    return sorted(events + bot, key=lambda e: (e["ts"], e["event_id"]))


async def test_dashboard_renders_live_charts_in_chromium(
    settings: Settings, tmp_path: Path
) -> None:
    assert HAVE_CHROMIUM, "install Debian's chromium: apt-get install -y chromium"
    settings = settings.with_(public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN)
    await ensure_topics(settings)
    rows = storefront()
    bad: list[tuple[bytes | None, bytes | None]] = [(b"x", b"{oops")]
    records = [(e["user_id"].encode(), orjson.dumps(e)) for e in rows] + bad
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_healthy()
        await produce(settings, records)
        snap = worker.poll_json(
            "/api/dashboard",
            lambda s: s["totals"]["events_in"] >= len(rows) and len(s["series"]["t"]) >= 3,
            "all events processed and three closed buckets", timeout=90.0,
        )
        assert snap["trending"], snap.get("store_error")
        assert sum(snap["segments"].values()) == len({e["user_id"] for e in rows})
        assert any(a["user_id"] == "bot-1" and a["kind"] == "bot" for a in snap["latest_anomalies"])
        assert max(snap["series"]["events_per_s"]) > 0

        status, headers, _ = worker.call("GET", "/dashboard")  # what a browser gets first
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        ARTIFACTS.mkdir(exist_ok=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
            )
            try:
                page = await browser.new_page(
                    viewport={"width": 1400, "height": 1300},
                    http_credentials={"username": "owner", "password": ADMIN_TOKEN},
                    # the page's CSP forbids eval, which Playwright's polling of a string
                    # predicate may use: bypassed for the test's own scripts only
                    bypass_csp=True,
                )
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(worker.url("/dashboard"), timeout=30_000)
                await page.wait_for_function(
                    "document.body.dataset.loaded === '1' && "
                    "Number(document.querySelector('#c-throughput').dataset.points) > 1",
                    timeout=30_000,
                )
                lines = await page.eval_on_selector_all(
                    "#c-throughput path.line, #c-latency path.line",
                    "els => els.map(e => e.getAttribute('d'))",
                )
                kpi = await page.text_content("[data-kpi='events processed']") or ""
                trending = await page.locator("#trending tr").count()
                segments = await page.locator("#segments tr").count()
                anomalies = await page.text_content("#anomalies") or ""
                await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                await browser.close()
    assert errors == []
    assert len(lines) >= 2
    assert any(d.count("L") >= 2 for d in lines), lines  # a line through 3+ points
    assert int(kpi.replace(",", "").replace("\u202f", "")) >= len(rows)
    assert trending >= 2 and segments >= 2  # header + rows
    assert "bot-1" in anomalies
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
