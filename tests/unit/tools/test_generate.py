"""The synthetic storefront: deterministic by seed, contract-valid, truthful ground truth."""

from __future__ import annotations

import csv
import io
import itertools
from collections import defaultdict
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
