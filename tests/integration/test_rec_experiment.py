"""Recommendation feedback and the live A/B test with the real worker (issue 18, Build 4):
``shop.recommendations`` carry ``rec_id`` and the user's ``arm``; views and purchases sent
back with those ids give exactly the clicks, buys and attributed revenue per arm in
``GET /experiments`` and on the dashboard (headless Chromium), and its impressions are the
recommendations a consumer received.
(A redelivered batch adds nothing: tests/integration/test_kpi_store.py, the same script.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import async_playwright

from streams.core.settings import Settings
from streams.domain.kpis import day_of
from streams.domain.recommendations import rec_arm, rec_id
from streams.kafka import ensure_topics
from streams.worker.configs import rec_arms
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, HAVE_CHROMIUM
from tests.support.worker import ADMIN_TOKEN, WorkerProcess, committed, consume, produce


def event(eid: str, etype: str, user: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": eid, "type": etype, "user_id": user, "session_id": f"s-{user}",
            "item_id": f"i{int(user[1:]) % 5}", "ts": ts, **extra}  # fmt: skip


async def send(settings: Settings, events: list[dict[str, Any]]) -> None:
    await produce(settings, [(e["user_id"].encode(), orjson.dumps(e)) for e in events])


async def caught_up(settings: Settings, n: int, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 60
    while await committed(settings) < n:
        assert time.monotonic() < deadline and worker.alive(), worker.logs()
        await asyncio.sleep(0.3)


async def dashboard_panel(worker: WorkerProcess, shot: Path) -> list[list[str]]:
    """The rows of the dashboard's experiment panel, read in headless Chromium."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            page = await browser.new_page(
                viewport={"width": 1400, "height": 1600}, bypass_csp=True,
                http_credentials={"username": "owner", "password": ADMIN_TOKEN},
            )  # fmt: skip
            await page.goto(worker.url("/dashboard"), timeout=30_000)
            await page.wait_for_function("document.querySelectorAll('#experiment tr').length === 3")
            await page.screenshot(path=str(shot), full_page=True)
            rows: list[list[str]] = await page.eval_on_selector_all(
                "#experiment tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
            )
        finally:
            await browser.close()
    return rows


async def test_feedback_with_rec_ids_gives_exact_clicks_and_revenue_per_arm(
    settings: Settings, tmp_path: Path
) -> None:
    assert HAVE_CHROMIUM, "install Debian's chromium: apt-get install -y chromium"
    settings = settings.with_(batch_size=16, rec_arm_b_share=0.5, rec_arm_b='{"two_hop": 0}',
                              admin_token=ADMIN_TOKEN)  # fmt: skip
    models: dict[str, str] = {str(a): m for a, m in rec_arms(settings).models.items()}
    t0 = int(time.time() * 1000) - 120_000
    users = [f"u{i:02d}" for i in range(24)]
    views = [event(f"v-{u}", "view", u, t0 + i) for i, u in enumerate(users)]
    await ensure_topics(settings)
    await send(settings, views)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        await asyncio.to_thread(worker.wait_healthy)
        first = [orjson.loads(r.value) for r in await consume(
            settings.topic_recommendations, settings, until=len(users), wait_s=60)]  # fmt: skip
        assert len(first) == len(users)
        for m in first:
            assert m["rec_id"] == rec_id(m["user_id"], m["trigger_event_id"])
            assert m["arm"] == rec_arm(m["user_id"], 0.5) and m["model"] == models[m["arm"]]
        assert {m["arm"] for m in first} == {"A", "B"}
        # feedback: every 2nd recommendation clicked (twice: a click counts once), every 3rd
        # bought; an id of no recommendation counts as a click of its user's arm
        feedback = [event("f-u01", "view", "u01", t0 + 50_000, rec_id="no-such-rec")]
        for i, m in enumerate(first):
            u, rid, ts = m["user_id"], m["rec_id"], t0 + 60_000 + i
            if i % 2 == 0:
                feedback += [event(f"c-{u}", "view", u, ts, rec_id=rid),
                             event(f"c2-{u}", "view", u, ts + 1, rec_id=rid)]  # fmt: skip
            if i % 3 == 0:
                feedback.append(event(f"p-{u}", "purchase", u, ts + 2, rec_id=rid,
                                      price=10.0 + i, quantity=2))  # fmt: skip
        await send(settings, feedback)
        await caught_up(settings, len(views) + len(feedback), worker)
        days = sorted({day_of(e["ts"]) for e in views + feedback})
        got = worker.get_json(f"/experiments?from={days[0]}&to={days[-1]}")
        panel = await dashboard_panel(worker, tmp_path / "dashboard-experiment.png")
    arms = got["arms"]
    shown = sum(a["impressions"] for a in arms.values())
    received = [orjson.loads(r.value) for r in await consume(
        settings.topic_recommendations, settings, wait_s=30,
        done=lambda out: len({orjson.loads(r.value)["rec_id"] for r in out}) >= shown)]  # fmt: skip
    by_arm = {a: {m["rec_id"] for m in received if m["arm"] == a} for a in "AB"}
    want: dict[str, dict[str, Any]] = {a: {"clicks": set(), "buys": set(), "revenue": 0.0}
                                       for a in "AB"}  # fmt: skip
    for e in feedback:
        w = want[rec_arm(e["user_id"], 0.5)]
        w["clicks"].add(e["rec_id"])
        if e["type"] == "purchase":
            w["buys"].add(e["rec_id"])
            w["revenue"] += e["price"] * e["quantity"]
    for a in "AB":
        assert arms[a]["impressions"] == len(by_arm[a]) > len(users) // 4, (a, arms[a])
        assert arms[a]["clicks"] == len(want[a]["clicks"]) > 0, a
        assert arms[a]["buys"] == len(want[a]["buys"]) > 0, a
        assert arms[a]["revenue"] == round(want[a]["revenue"], 2), a
        assert arms[a]["model"] == models[a]
    assert got["difference"]["ctr"]["low"] <= got["difference"]["ctr"]["estimate"]
    # the dashboard's panel (default range: the last 30 days) shows the same figures
    shown = {r[0]: r for r in panel[1:]}
    for a in "AB":
        row, x = shown[a], arms[a]
        assert row[1] == x["model"] and row[2:4] == [str(x["impressions"]), str(x["clicks"])]
        shown_ctr = float(row[4].split("%")[0])  # "40% (…)" or "41.7% (…)": at most 1 decimal
        assert row[5] == str(x["buys"]) and shown_ctr == round(100 * x["ctr"], 1), row
    print(f"verified: {len(received)} recommendations ({shown} distinct), arms {arms}")
