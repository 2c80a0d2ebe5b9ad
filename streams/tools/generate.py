"""A synthetic storefront: contract events plus the ground truth of who churned when.

Customers arrive in **cohorts**: a third are there from the first day, the others join in
monthly acquisition waves of different sizes. They differ in how often they buy (median ~12
days between orders, log-normal and wide: from every couple of days to once a year), how
often a visit converts, and how they leave -- **at every rhythm**: each order may be the
last (a per-customer drop-out chance) and, independently of their rhythm, a calendar-time
hazard may end them between orders; a fifth buy once and never return. Customers who stay
sometimes take **long breaks** (months without a visit) and come back, so a long silence is
not proof of churn. A churned user stops buying and mostly stops visiting. Sessions browse
mostly one favourite category and walk its catalogue sequentially (item j is often followed
by item j+1), so next-item recommendations are learnable; carts are sometimes abandoned.
Everything comes from ``random.Random(seed)``.

>>> events, truth = generate(users=5, seed=1, days=30)
>>> events == generate(users=5, seed=1, days=30)[0]
True
>>> sorted({e["type"] for e in events}) == sorted(
...     ["view", "add_to_cart", "remove_from_cart", "purchase", "search", "session_start"])
True
>>> transactions_csv(events).splitlines()[0]
'user_id,timestamp,amount'
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

DAY_MS: Final = 86_400_000
DEFAULT_START_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00:00Z
N_CATEGORIES: Final = 12
ITEMS_PER_CATEGORY: Final = 40
CATEGORY_NAMES: Final = (
    "books", "music", "games", "garden", "kitchen", "toys",
    "sports", "beauty", "shoes", "office", "pets", "tools",
)  # fmt: skip
#: Days between orders of an active customer: log-normal (median, sigma), clipped.
INTERVAL_MEDIAN_DAYS = 12.0
INTERVAL_SIGMA = 1.0
INTERVAL_MAX_DAYS = 365.0
#: Calendar-time churn hazard per day: log-normal (median, sigma), whatever the rhythm.
HAZARD_MEDIAN = 1 / 240
HAZARD_SIGMA = 0.8
#: Chance that an order is the customer's last: Beta(1, DROPOUT_B) per customer (mean 1/8).
DROPOUT_B = 7.0
#: Share of customers who buy once and never come back ("one-off" buyers).
ONE_OFF_SHARE = 0.2
#: Share of customers there from the first day; the others join in monthly cohorts whose
#: sizes vary (log-normal weights, sigma COHORT_SIGMA) over the first COHORT_SPAN of the days.
FOUNDERS_SHARE = 1 / 3
COHORT_SIGMA = 0.6
COHORT_SPAN = 0.7
#: Breaks of customers who stay: per-day chance of starting one, and its length in days
#: (log-normal median, sigma); no visits during a break.
BREAK_RATE = 1 / 365
BREAK_MEDIAN_DAYS = 90.0
BREAK_SIGMA = 0.6
WORDS: Final = ("cheap", "new", "best", "gift", "sale", "red", "large", "pro")


def _catalog(rng: random.Random) -> dict[str, float]:
    prices: dict[str, float] = {}
    for c in range(N_CATEGORIES):
        base = rng.lognormvariate(math.log(25.0), 0.6)
        for j in range(ITEMS_PER_CATEGORY):
            prices[f"i{c:02d}{j:03d}"] = round(base * rng.lognormvariate(0.0, 0.4), 2)
    return prices


def _pick_item(rng: random.Random) -> int:
    return int(ITEMS_PER_CATEGORY * rng.random() ** 2)  # a few popular items per category


def _session(
    rng: random.Random, uid: str, sid: str, t: int, favs: list[int], convert: bool,
    prices: dict[str, float], out: list[dict[str, Any]],
) -> None:  # fmt: skip
    def emit(etype: str, **kw: Any) -> None:
        out.append({"type": etype, "user_id": uid, "session_id": sid, "ts": t, **kw})

    emit("session_start")
    c = rng.choice(favs) if rng.random() < 0.8 else rng.randrange(N_CATEGORIES)
    cat = CATEGORY_NAMES[c]
    if rng.random() < 0.3:
        t += rng.randint(2_000, 20_000)
        emit("search", query=f"{rng.choice(WORDS)} {cat}")
    j = _pick_item(rng)
    cart: list[str] = []
    for _ in range(1 + min(int(rng.expovariate(1 / 5)), 20)):
        item = f"i{c:02d}{j:03d}"
        t += rng.randint(10_000, 120_000)
        emit("view", item_id=item, category=cat, price=prices[item])
        if rng.random() < (0.35 if convert else 0.12):
            t += rng.randint(3_000, 30_000)
            emit("add_to_cart", item_id=item, category=cat, price=prices[item], quantity=1)
            cart.append(item)
        j = (j + 1) % ITEMS_PER_CATEGORY if rng.random() < 0.6 else _pick_item(rng)
    if cart and rng.random() < 0.2:
        t += rng.randint(3_000, 30_000)
        item = cart.pop()
        emit("remove_from_cart", item_id=item, category=cat, price=prices[item], quantity=1)
    if convert:
        if not cart:
            t += rng.randint(3_000, 30_000)
            cart.append(f"i{c:02d}{j:03d}")
            emit("add_to_cart", item_id=cart[0], category=cat, price=prices[cart[0]], quantity=1)
        t += rng.randint(30_000, 300_000)
        for item in cart:
            qty = 1 if rng.random() < 0.85 else 2
            emit("purchase", item_id=item, category=cat, price=prices[item], quantity=qty)
            t += 1_000


def _bot(rng: random.Random, uid: str, start_ms: int, days: int) -> list[dict[str, Any]]:
    """A scraper: a few bursts of 50-90 views of random items, under a second apart."""
    out: list[dict[str, Any]] = []
    for burst in range(rng.randint(3, 8)):
        t = start_ms + int(rng.random() * days * DAY_MS)
        sid = f"{uid}-s{burst:04d}"
        out.append({"type": "session_start", "user_id": uid, "session_id": sid, "ts": t})
        for _ in range(rng.randint(50, 90)):
            t += rng.randint(200, 900)
            c, j = rng.randrange(N_CATEGORIES), rng.randrange(ITEMS_PER_CATEGORY)
            out.append({"type": "view", "user_id": uid, "session_id": sid, "ts": t,
                        "item_id": f"i{c:02d}{j:03d}", "category": CATEGORY_NAMES[c]})  # fmt: skip
    out.sort(key=lambda e: e["ts"])
    for k, e in enumerate(out):
        e["event_id"] = f"{uid}-{k:05d}"
    return out


def _cohorts(rng: random.Random, days: int) -> list[tuple[int, float]]:
    """Monthly acquisition waves: (first day, relative size)."""
    span = max(int(COHORT_SPAN * days), 1)
    return [(d, rng.lognormvariate(0.0, COHORT_SIGMA)) for d in range(0, span, 30)]


def _join_day(rng: random.Random, cohorts: list[tuple[int, float]], days: int) -> tuple[int, float]:
    """(cohort index, join day): -1 for a founder, there from the first day."""
    if rng.random() < FOUNDERS_SHARE:
        return -1, 0.0
    k = rng.choices(range(len(cohorts)), weights=[w for _, w in cohorts])[0]
    first = cohorts[k][0]
    return k, first + rng.random() * min(30.0, days - first)


def generate(
    users: int, seed: int, start_ms: int = DEFAULT_START_MS, days: int = 120, bots: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Contract events (sorted by ``ts``, epoch ms) and one ground-truth row per user.

    ``bots`` adds scrapers (``bot000``...: bursts of fast views, which the anomaly detector
    flags), from their own random stream: the users' events are the same with or without.
    """
    rng = random.Random(seed)  # noqa: S311 -- simulation, not cryptography
    prices = _catalog(rng)
    cohorts = _cohorts(rng, days)
    end_ms = start_ms + days * DAY_MS
    events: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for u in range(users):
        uid = f"u{u:05d}"
        cohort, join_day = _join_day(rng, cohorts, days)
        join = start_ms + int(join_day * DAY_MS)
        interval = rng.lognormvariate(math.log(INTERVAL_MEDIAN_DAYS), INTERVAL_SIGMA)
        interval = min(max(interval, 1.5), INTERVAL_MAX_DAYS)
        conversion = rng.uniform(0.25, 0.6)
        hazard = rng.lognormvariate(math.log(HAZARD_MEDIAN), HAZARD_SIGMA)
        dropout = rng.betavariate(1.0, DROPOUT_B)
        churn_at = join + int(rng.expovariate(hazard) * DAY_MS)
        one_off = rng.random() < ONE_OFF_SHARE
        favs = rng.sample(range(N_CATEGORIES), rng.choice((1, 2)))
        session_rate = 1.0 / (interval * conversion)  # sessions per day while active
        mine: list[dict[str, Any]] = []
        t, n_sessions, n_orders, breaks = join, 0, 0, 0
        while True:
            churned = t >= churn_at
            rate = session_rate * (0.05 if churned else 1.0)
            gap = rng.expovariate(rate)
            if not churned and rng.random() < 1.0 - math.exp(-BREAK_RATE * gap):
                gap += rng.lognormvariate(math.log(BREAK_MEDIAN_DAYS), BREAK_SIGMA)
                breaks += 1
            t += int(gap * DAY_MS)
            if t >= end_ms:
                break
            convert = t < churn_at and rng.random() < conversion
            n_orders += convert
            _session(rng, uid, f"{uid}-s{n_sessions:04d}", t, favs, convert, prices, mine)
            if convert:  # churn takes effect after the session (a one-off buyer's first)
                session_end = mine[-1]["ts"] + 1
                last = one_off or rng.random() < dropout
                churn_at = session_end if last else max(churn_at, session_end)
            n_sessions += 1
        for k, e in enumerate(mine):
            e["event_id"] = f"{uid}-{k:05d}"
        events.extend(e for e in mine if e["ts"] < end_ms)
        truth.append(
            {
                "user_id": uid,
                "churned": churn_at < end_ms,
                "churn_ts_ms": churn_at if churn_at < end_ms else None,
                "join_ts_ms": join,
                "cohort": cohort,
                "mean_interval_days": round(interval, 3),
                "conversion": round(conversion, 3),
                "hazard_per_day": round(hazard, 6),
                "dropout_per_order": round(dropout, 4),
                "one_off": one_off,
                "breaks": breaks,
                "favourite_categories": [CATEGORY_NAMES[c] for c in favs],
                "orders": n_orders,
            }
        )
    bot_rng = random.Random(seed * 7_919 + 1)  # noqa: S311 -- simulation
    for b in range(bots):
        uid = f"bot{b:03d}"
        events.extend(e for e in _bot(bot_rng, uid, start_ms, days) if e["ts"] < end_ms)
        truth.append({"user_id": uid, "bot": True})
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events, truth


def transactions_csv(events: list[dict[str, Any]]) -> str:
    """Purchases as the ``user_id,timestamp,amount`` CSV read by ``evaluate churn``."""
    lines = ["user_id,timestamp,amount"]
    for e in events:
        if e["type"] == "purchase":
            ts = datetime.fromtimestamp(e["ts"] / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            amount = e.get("price", 0.0) * e.get("quantity", 1)
            lines.append(f"{e['user_id']},{ts},{amount:.2f}")
    return "\n".join(lines) + "\n"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row) + b"\n")
