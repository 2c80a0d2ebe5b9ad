"""The business panels of the dashboard in headless Chromium (issue 18, done-when 3).

The real worker replays a generated shop; six churn alerts (three per group, registered in
the KPI store as the batch registers the alerts it publishes) are resolved by the
customers' purchases. The page, opened in Debian's ``chromium`` driven by Playwright, must
show the revenue, the funnel, the forecast with its recent error and the coupons' uplift
computed from what was sent (tests/support/business.py, independently of the worker's
code), for a date range chosen on the page, which survives a reload and a worker restart.
A screenshot goes to ``<tmp>/artifacts/`` (and ``test-artifacts/``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from playwright.async_api import Page, async_playwright

from models.uplift import newcombe
from streams.core.settings import Settings
from streams.domain.business import forecast_panel
from streams.kafka import ensure_topics
from streams.tools.generate import generate
from streams.worker.kpi_store import kpi_store
from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from tests.support.business import expected_days, range_totals, utc_day
from tests.support.worker import ADMIN_TOKEN, PUBLIC_KEY, WorkerProcess, produce

DAY = 86_400_000
HORIZON_DAYS = 10
#: every business panel is drawn (a worker that is still starting answers an error first)
PANELS_DRAWN = (
    "document.querySelector('[data-biz=revenue]') && "
    "document.querySelectorAll('#uplift tr').length === 3 && "
    "document.querySelectorAll('#forecast tr').length > 1"
)


def alerts_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Six alerts on day 8 for customers who bought before it: treatment for two who buy
    again within the horizon and one who does not, holdout for one and two (a known
    uplift of 1/3)."""
    at = min(e["ts"] for e in events) + 8 * DAY
    buyers = sorted({e["user_id"] for e in events if e["type"] == "purchase" and e["ts"] < at})
    back = {e["user_id"] for e in events if e["type"] == "purchase"
            and at <= e["ts"] <= at + HORIZON_DAYS * DAY}  # fmt: skip
    yes, no = [u for u in buyers if u in back], [u for u in buyers if u not in back]
    assert len(yes) >= 3 and len(no) >= 3, (yes, no)
    groups = [(yes[0], "treatment"), (yes[1], "treatment"), (no[0], "treatment"),
              (yes[2], "holdout"), (no[1], "holdout"), (no[2], "holdout")]  # fmt: skip
    return [{"alert_id": f"a-{uid}", "user_id": uid, "ts": at, "group": g,
             "action": {"value_tier": "bronze"}} for uid, g in groups]  # fmt: skip


def outcomes(events: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    came_back = {
        a["alert_id"] for a in alerts for e in events
        if e["user_id"] == a["user_id"] and e["type"] == "purchase"
        and a["ts"] <= e["ts"] <= a["ts"] + HORIZON_DAYS * DAY
    }  # fmt: skip
    out: dict[str, Any] = {}
    for g in ("treatment", "holdout"):
        mine = [a for a in alerts if a["group"] == g]
        out[g] = (len(mine), sum(a["alert_id"] in came_back for a in mine))
    return out


def number(text: str | None) -> float:
    found = re.search(r"-?\d[\d,]*(\.\d+)?", text or "")
    assert found, text
    return float(found.group(0).replace(",", ""))


async def read_panels(page: Page) -> dict[str, Any]:
    cells = await page.eval_on_selector_all(
        "#uplift tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
    )
    return {
        "revenue": number(await page.text_content("[data-biz='revenue']")),
        "orders": number(await page.text_content("[data-biz='orders']")),
        "funnel": {
            s: number(await page.text_content(f"[data-stage='{s}'] .num"))
            for s in ("viewed", "carted", "bought")
        },
        "abandonment": await page.text_content("#abandonment"),
        "revenue_points": int(await page.get_attribute("#c-revenue", "data-points") or 0),
        "forecast_rows": await page.locator("#forecast tr").count(),
        "forecast_first": await page.text_content("#forecast tr:nth-child(2) td:nth-child(2)"),
        "forecast_error": await page.text_content("#forecast-error"),
        "uplift_rows": {r[0]: r for r in cells[1:]},
        "uplift_estimate": await page.text_content("#uplift-estimate"),
    }


async def test_dashboard_shows_revenue_funnel_forecast_and_uplift_in_chromium(
    settings: Settings, tmp_path: Path
) -> None:
    assert HAVE_CHROMIUM, "install Debian's chromium: apt-get install -y chromium"
    settings = settings.with_(
        public_key=PUBLIC_KEY, admin_token=ADMIN_TOKEN, churn_idle_days=5.0,
        churn_horizon_days=float(HORIZON_DAYS),
        churn_min_customers=10**6,  # no alerts of the model's own
    )  # fmt: skip
    events, _ = generate(users=60, seed=21, days=30)
    days = expected_days(events)
    first, last = min(days), max(days)
    want = range_totals(days, first, last)
    alerts = alerts_of(events)
    truth = outcomes(events, alerts)
    assert truth == {"treatment": (3, 2), "holdout": (3, 1)}
    history = [{"day": d, "revenue": v["revenue"], "orders": v["orders"]} for d, v in days.items()]
    fc = forecast_panel(history, today=utc_day(max(e["ts"] for e in events)))
    assert fc["mae"] is not None and fc["forecast"]

    await ensure_topics(settings)
    redis = aioredis.from_url(settings.redis_url)
    try:
        await kpi_store(redis, settings).apply([], alerts)
    finally:
        await redis.aclose()
    await produce(settings, [(e["user_id"].encode(), orjson.dumps(e)) for e in events])
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    query = f"/api/dashboard?from={first}&to={last}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            page = await browser.new_page(
                viewport={"width": 1400, "height": 1600},
                http_credentials={"username": "owner", "password": ADMIN_TOKEN},
                bypass_csp=True,  # Playwright's polling of a string predicate may use eval
            )
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            with WorkerProcess(settings, tmp_path / "worker.log") as worker:
                worker.wait_healthy()
                worker.poll_json(query, lambda s: s["business"].get("totals", {}).get("orders")
                                 == want["orders"], "every order counted")  # fmt: skip
                await page.goto(worker.url("/dashboard"), timeout=30_000)
                await page.wait_for_function("document.body.dataset.loaded === '1'")
                await page.fill("#from", first)
                await page.fill("#to", last)
                await page.dispatch_event("#to", "change")
                await page.wait_for_function(
                    f"document.querySelector('[data-biz=days]').textContent.includes('{first}')"
                )
                await page.wait_for_function(PANELS_DRAWN)
                shown = await read_panels(page)
                await page.screenshot(path=str(artifacts / "dashboard-business.png"),
                                      full_page=True)  # fmt: skip
            # the figures live in Redis and the range in the browser: a restart keeps both
            with WorkerProcess(settings, tmp_path / "worker.log") as worker:
                worker.wait_healthy()
                await page.reload()
                await page.wait_for_function(PANELS_DRAWN)
                assert await page.input_value("#from") == first
                assert await page.input_value("#to") == last
                again = await read_panels(page)
        finally:
            await browser.close()
    assert errors == []
    assert shown["revenue"] == round(want["revenue"], 2) and shown["orders"] == want["orders"]
    assert shown["funnel"] == {"viewed": want["funnel"]["view"], "carted": want["funnel"]["cart"],
                               "bought": want["funnel"]["purchase"]}  # fmt: skip
    assert f"{100 * want['cart_abandonment']:.1f}%" in (shown["abandonment"] or "")
    assert shown["revenue_points"] == len(days)
    assert shown["forecast_rows"] == 1 + 7  # header + the next 7 days
    assert number(shown["forecast_first"]) == round(fc["forecast"][0]["revenue"], 2)
    error = [number(x) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", shown["forecast_error"] or "")]
    assert round(fc["mae"], 2) in error and round(fc["baseline_mae"], 2) in error, error
    for g, (n, came_back) in truth.items():
        row = shown["uplift_rows"][g]
        assert (number(row[1]), number(row[2]), number(row[3])) == (n, 0, came_back), row
        assert row[6] == "0" and row[7] == row[5], row  # no coupon cost: net = revenue
    (nt, kt), (nh, kh) = truth["treatment"], truth["holdout"]
    d, _, _ = newcombe(kt, nt, kh, nh)
    estimate = re.search(r"(-?[\d.]+) points", shown["uplift_estimate"] or "")
    assert estimate and float(estimate.group(1)) == round(100 * d, 1), shown["uplift_estimate"]
    assert again == shown
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(artifacts / "dashboard-business.png", ARTIFACTS / "dashboard-business.png")
    assert (artifacts / "dashboard-business.png").stat().st_size > 10_000
    print(
        f"verified in chromium: revenue {shown['revenue']}, {shown['orders']} orders, "
        f"funnel {shown['funnel']}, forecast MAE {fc['mae']} (naive {fc['baseline_mae']}), "
        f"uplift {d:+.3f}; screenshot {artifacts / 'dashboard-business.png'}"
    )
