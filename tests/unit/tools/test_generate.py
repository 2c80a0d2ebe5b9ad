"""The synthetic storefront: deterministic by seed, contract-valid, truthful ground truth."""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from streams.cli import generate as generate_command
from streams.core.events import validate
from streams.tools.generate import DEFAULT_START_MS, generate, transactions_csv


@pytest.fixture(scope="module")
def world() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    return generate(users=200, seed=11, days=60)


def test_same_seed_same_output_other_seed_differs() -> None:
    a = generate(users=50, seed=3, days=40)
    b = generate(users=50, seed=3, days=40)
    c = generate(users=50, seed=4, days=40)
    assert orjson.dumps(a) == orjson.dumps(b)
    assert a[0] != c[0]


def test_events_are_contract_valid_sorted_and_uniquely_identified(world) -> None:  # type: ignore[no-untyped-def]
    events, _ = world
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert DEFAULT_START_MS <= ts[0] and ts[-1] < DEFAULT_START_MS + 60 * 86_400_000
    assert len({e["event_id"] for e in events}) == len(events)
    for e in events:
        validate(e)  # raises on any contract violation
    assert {e["type"] for e in events} == {
        "view",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
        "search",
        "session_start",
    }


def test_truth_matches_behaviour(world) -> None:  # type: ignore[no-untyped-def]
    events, truth = world
    assert len(truth) == 200
    last_purchase: dict[str, int] = defaultdict(int)
    for e in events:
        if e["type"] == "purchase":
            last_purchase[str(e["user_id"])] = max(last_purchase[str(e["user_id"])], int(e["ts"]))
    churned = [t for t in truth if t["churned"]]
    assert 0 < len(churned) < len(truth)
    for t in churned:  # nobody buys after churning
        assert last_purchase.get(str(t["user_id"]), 0) <= int(t["churn_ts_ms"])
    rates = sorted(float(t["mean_interval_days"]) for t in truth)
    assert rates[-len(rates) // 10] > 3 * rates[len(rates) // 10]  # heterogeneous buyers


def test_sessions_walk_a_category_sequentially(world) -> None:  # type: ignore[no-untyped-def]
    events, _ = world
    by_session: dict[str, list[dict[str, object]]] = defaultdict(list)
    for e in events:
        if e["type"] == "view":
            by_session[str(e["session_id"])].append(e)
    pairs = same_cat = successor = 0
    for views in by_session.values():
        for a, b in itertools.pairwise(views):
            pairs += 1
            same_cat += a["category"] == b["category"]
            successor += int(str(b["item_id"])[3:]) == (int(str(a["item_id"])[3:]) + 1) % 40
    assert same_cat == pairs
    assert successor / pairs > 0.4


def test_transactions_csv(world) -> None:  # type: ignore[no-untyped-def]
    events, _ = world
    rows = list(csv.DictReader(io.StringIO(transactions_csv(events))))
    assert len(rows) == sum(e["type"] == "purchase" for e in events)
    assert rows[0].keys() == {"user_id", "timestamp", "amount"}
    assert rows[0]["timestamp"].endswith("Z") and float(rows[0]["amount"]) > 0


def test_generate_command_writes_events_truth_and_transactions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shop.jsonl"
    tx = tmp_path / "tx.csv"
    generate_command(out=out, users=20, seed=5, days=30, truth=None, transactions=tx)
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    truth = [
        orjson.loads(line) for line in (tmp_path / "shop.truth.jsonl").read_bytes().splitlines()
    ]
    assert events == generate(20, 5, days=30)[0] and len(truth) == 20
    assert tx.read_text().startswith("user_id,timestamp,amount\n")
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("wrote ") and "\n" not in printed


@pytest.fixture(scope="module")
def long_world() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    return generate(users=600, seed=5, days=400)


def test_customers_arrive_in_cohorts(long_world) -> None:  # type: ignore[no-untyped-def]
    _, truth = long_world
    founders = [t for t in truth if t["cohort"] == -1]
    assert 0.25 < len(founders) / len(truth) < 0.42
    assert all(t["join_ts_ms"] == DEFAULT_START_MS for t in founders)
    sizes = Counter(int(str(t["cohort"])) for t in truth if t["cohort"] != -1)
    assert len(sizes) >= 8 and max(sizes.values()) > 2 * min(sizes.values())  # uneven waves
    for t in truth:  # each joins in its cohort's month
        if t["cohort"] != -1:
            day = (int(str(t["join_ts_ms"])) - DEFAULT_START_MS) / 86_400_000
            assert 30 * int(str(t["cohort"])) <= day < 30 * int(str(t["cohort"])) + 30


def test_customers_churn_at_every_rhythm_and_some_silences_end(long_world) -> None:  # type: ignore[no-untyped-def]
    events, truth = long_world
    def churn_rate(rows: list[dict[str, object]]) -> float:
        return sum(bool(t["churned"]) for t in rows) / len(rows)

    fast = [t for t in truth if float(str(t["mean_interval_days"])) < 6 and not t["one_off"]]
    slow = [t for t in truth if float(str(t["mean_interval_days"])) > 40 and not t["one_off"]]
    assert len(fast) > 30 and len(slow) > 30
    assert 0.2 < churn_rate(fast) < 1.0 and 0.2 < churn_rate(slow) < 1.0
    assert max(float(str(t["mean_interval_days"])) for t in truth) > 200  # up to yearly buyers
    purchases: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e["type"] == "purchase":
            purchases[str(e["user_id"])].append(int(str(e["ts"])))
    came_back = [  # a silence of over 120 days between two orders: long, and not churn
        u for u, ts in purchases.items()
        if any(b - a > 120 * 86_400_000 for a, b in itertools.pairwise(sorted(ts)))
    ]  # fmt: skip
    assert len(came_back) > 10
    assert sum(int(str(t["breaks"])) > 0 for t in truth) > 30
