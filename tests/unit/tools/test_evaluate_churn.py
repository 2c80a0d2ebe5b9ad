"""``evaluate churn``: quality on generated data, cutoff honesty, metrics, CSV errors, CLI."""

from __future__ import annotations

import itertools
import math
import random
from datetime import date
from pathlib import Path

import orjson
import pytest
import typer
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from streams.cli import evaluate_churn
from streams.core.settings import Settings
from streams.tools.evaluate_churn import (
    Row,
    Scored,
    TransactionsError,
    average_precision,
    eval_settings,
    evaluate,
    partition_of,
    read_transactions,
    roc_auc,
    score_at_cutoff,
)
from streams.tools.failures import explain
from streams.tools.generate import generate, transactions_csv

CUTOFF = date(2024, 3, 30)  # day 90 of the generated 120 days: history end + 30 = data end
T_MS = 1_711_843_200_000  # 2024-03-31T00:00:00Z, the end of the cutoff day
TRUTH_KEYS = {"auc", "pr_auc", "baseline_auc", "baseline_pr_auc", "positives", "positive_rate",
              "lift", "analytic_auc", "learned_auc", "brier", "analytic_brier", "learned_brier",
              "buckets", "min_bucket_auc", "alerts"}  # fmt: skip


@pytest.fixture(scope="module")
def tx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events, _ = generate(users=1000, seed=1)
    path = tmp_path_factory.mktemp("churn") / "tx.csv"
    path.write_text(transactions_csv(events))
    return path


@pytest.fixture(scope="module")
def result(tx: Path) -> dict[str, object]:
    return evaluate(tx, CUTOFF, 30.0)


@pytest.fixture(scope="module")
def small_tx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events, _ = generate(users=250, seed=2)
    path = tmp_path_factory.mktemp("churn") / "small.csv"
    path.write_text(transactions_csv(events))
    return path


@pytest.fixture(scope="module")
def small_result(small_tx: Path) -> dict[str, object]:
    return evaluate(small_tx, CUTOFF, 30.0)


def test_reaches_the_target_and_beats_recency(result: dict[str, object]) -> None:
    auc, base = float(result["auc"]), float(result["baseline_auc"])  # type: ignore[arg-type]
    assert auc >= 0.85
    assert auc > base
    assert float(result["pr_auc"]) > 0.5  # type: ignore[arg-type]
    assert int(result["n"]) > 700 and 0 < int(result["positives"]) < int(result["n"])  # type: ignore[call-overload]
    assert int(result["labels_learned"]) > 1000  # type: ignore[call-overload]


def _tamper_future(src: Path, dst: Path) -> None:
    """Change everything at/after the cutoff: amounts, deletions, new users and purchases."""
    rng = random.Random(0)
    lines = src.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        user, ts, amount = line.split(",")
        if ts >= "2024-03-31":
            if rng.random() < 0.3:
                continue
            amount = f"{float(amount) * 7 + 1:.2f}"
        out.append(f"{user},{ts},{amount}")
    users = sorted({line.split(",")[0] for line in lines[1:]})
    out += [f"{u},2024-04-0{1 + i % 9}T12:00:00Z,99.00" for i, u in enumerate(users[::3])]
    out += ["brand-new,2024-04-02,10.00", "brand-new,2024-06-02T00:00:00+02:00,5"]
    rng.shuffle(out[1:])
    dst.write_text("\n".join(out) + "\n")


def test_rows_after_the_cutoff_change_nothing_but_the_truth(
    small_tx: Path, small_result: dict[str, object], tmp_path: Path
) -> None:
    tx, result = small_tx, small_result
    other = tmp_path / "tampered.csv"
    _tamper_future(tx, other)

    def scores(path: Path) -> dict[str, Scored]:
        history = [r for r in read_transactions(path) if r.ts_ms < T_MS]
        return score_at_cutoff(history, T_MS, eval_settings(Settings(), 30.0)).scores

    assert scores(tx) == scores(other)
    changed = evaluate(other, CUTOFF, 30.0)
    for key in result.keys() - TRUTH_KEYS:
        assert changed[key] == result[key], key
    assert changed["positives"] != result["positives"]


def test_cutoff_day_belongs_to_the_history(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = [
        "user_id,timestamp,amount",
        "a,2024-03-01,5",
        "b,2024-03-01,5",
        "a,2024-03-30,5",
        "b,2024-03-31,5",
        "c,2024-03-31,5",
    ]
    path.write_text("\n".join(rows) + "\n")
    r = evaluate(path, CUTOFF, 30.0)
    # a bought on the cutoff day (history) and not after -> positive; b came back -> negative;
    # c is first seen after the cutoff -> not scored.
    assert r["n"] == 2 and r["positives"] == 1


def test_bad_rows_name_their_line(tmp_path: Path) -> None:
    head = "user_id,timestamp,amount\n"
    cases = {
        head + "u,2024-01-01,1\nu,yesterday,2\n": "t.csv:3: timestamp 'yesterday'",
        head + "u,2024-01-01,abc\n": "t.csv:2: amount 'abc'",
        head + ",2024-01-01,1\n": "t.csv:2: empty user_id",
        "user,when,amount\nu,2024-01-01,1\n": "t.csv:1: header lacks column(s) ['timestamp'",
        head + "u,2024-01-01,nan\n": "t.csv:2: amount nan is not finite",
    }
    path = tmp_path / "t.csv"
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(TransactionsError) as info:
            read_transactions(path)
        assert message in str(info.value)
    with pytest.raises(TransactionsError, match="cannot open"):
        read_transactions(tmp_path / "missing.csv")
    path.write_text("user_id,timestamp,amount\nu,2024-05-01,1\n")
    with pytest.raises(TransactionsError, match="no transactions before the cutoff"):
        evaluate(path, CUTOFF, 30.0)


def _brute_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=30))
def test_roc_auc_matches_pair_counting(pairs: list[tuple[int, bool]]) -> None:
    scores = [float(s) for s, _ in pairs]
    labels = [y for _, y in pairs]
    got = roc_auc(scores, labels)
    if all(labels) or not any(labels):
        assert math.isnan(got)
    else:
        assert math.isclose(got, _brute_auc(scores, labels))
    ap = average_precision(scores, labels)
    assert math.isnan(ap) if not any(labels) else 0.0 < ap <= 1.0


def _app() -> typer.Typer:
    """``shopstream evaluate churn`` as its own app (its options start the argument list)."""
    app = typer.Typer()
    app.command()(evaluate_churn)
    return app


def test_command_json_is_exactly_one_object(tx: Path, result: dict[str, object]) -> None:
    out = CliRunner().invoke(
        _app(), ["--transactions", str(tx), "--cutoff", "2024-03-30", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert len(out.stdout.strip().splitlines()) == 1
    assert orjson.loads(out.stdout) == orjson.loads(orjson.dumps(result))


def test_command_table_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user_id,timestamp,amount\na,2024-03-01,5\nb,2024-03-20,5\nb,2024-04-02,1\n")
    out = CliRunner().invoke(_app(), ["--transactions", str(path), "--cutoff", "2024-03-30"])
    assert out.exit_code == 0 and "recency baseline" in out.stdout
    # errors reach `shopstream`'s main, which prints explain()'s one line and exits with its
    # code (tests/unit/cli/test_failures.py runs the real command)
    bad = CliRunner().invoke(_app(), ["--transactions", str(path), "--cutoff", "30/03/2024"])
    message, code = explain(bad.exception, None) or ("", 0)
    assert code == 2 and "not a YYYY-MM-DD date" in message
    path.write_text("user_id,timestamp,amount\na,2024-03-01,five\n")
    bad = CliRunner().invoke(_app(), ["--transactions", str(path), "--cutoff", "2024-03-30"])
    message, code = explain(bad.exception, None) or ("", 0)
    assert code == 2 and "t.csv:2" in message


def test_partitions_split_the_users_and_labels_between_models(
    small_tx: Path, small_result: dict[str, object]
) -> None:
    """What a worker with 4 partitions does: one model per partition, each learning only its
    own users' labels; the same users are scored and the same labels learned in total."""
    split = evaluate(small_tx, CUTOFF, 30.0, partitions=4)
    assert split["partitions"] == 4 and small_result["partitions"] == 1
    assert (split["n"], split["positives"]) == (small_result["n"], small_result["positives"])
    assert split["labels_learned"] == small_result["labels_learned"]
    assert split["auc"] != small_result["auc"]  # other models, other scores
    history = [r for r in read_transactions(small_tx) if r.ts_ms < T_MS]
    run = score_at_cutoff(history, T_MS, eval_settings(Settings(), 30.0), partitions=4)
    assert len(run.scorers) == 4 and all(g.model.n_learned > 0 for g in run.scorers)
    assert len(split["champions"]) == 4
    with pytest.raises(TransactionsError, match="partitions"):
        evaluate(small_tx, CUTOFF, 30.0, partitions=0)


def test_users_land_on_the_partition_the_producer_gives_them() -> None:
    """``--partitions`` splits users exactly like aiokafka's default partitioner does for
    records keyed by the user id (what ``shopstream replay`` and the storefront send)."""
    kafka = DefaultPartitioner()
    for n in (1, 3, 4, 12):
        for i in range(300):
            uid = f"u{i:05d}"
            assert partition_of(uid, n) == kafka(uid.encode(), list(range(n)), list(range(n)))


def test_the_default_horizon_is_the_workers_setting(
    small_tx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One default per setting (issue 20): without --horizon-days the evaluation uses the
    horizon the worker runs (SHOPSTREAM_CHURN_HORIZON_DAYS), not a second default of its own."""
    from streams.cli import base

    monkeypatch.setenv("SHOPSTREAM_CHURN_HORIZON_DAYS", "45")
    monkeypatch.setattr(base._State, "loaded", None)
    out = CliRunner().invoke(
        _app(), ["--transactions", str(small_tx), "--cutoff", "2024-03-30", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert orjson.loads(out.stdout)["horizon_days"] == 45.0
    monkeypatch.setattr(base._State, "loaded", None)


def seasonal_shop(seed: int = 3) -> tuple[list[Row], int, set[str]]:
    """A gift shop over a year and a season: steady regulars (some of whom stop), customers
    seen once in early December who come back for the next Christmas season more often
    (45 %) than customers seen once in February (20 %). Returns the history up to a
    cutoff on 9 September, the cutoff (ms) and who comes back in the 90 days after it."""
    rng = random.Random(seed)
    day = 86_400_000
    start, cutoff = 1_669_852_800_000, 1_694_304_000_000  # 2022-12-01, 2023-09-10
    rows: list[Row] = []
    back: set[str] = set()
    for u in range(300):  # regulars: every 10-40 days; a third stop at some point
        t, stop = start + rng.randrange(60) * day, start + rng.randrange(400) * day
        while t < cutoff + 90 * day and (u % 3 or t < stop):
            (rows.append(Row(f"r{u}", t, 50.0, 0)) if t < cutoff else back.add(f"r{u}"))
            t += rng.randrange(10, 40) * day
    for u, (first, share) in enumerate([(0, 0.45)] * 150 + [(62, 0.20)] * 150):
        uid = f"o{u}"
        rows.append(Row(uid, start + (first + rng.randrange(8)) * day, 30.0, 0))
        if rng.random() < share:
            back.add(uid)
    return sorted(rows, key=lambda r: r.ts_ms), cutoff, back


def test_one_time_buyers_of_last_season_are_not_ranked_gone_by_their_silence_alone() -> None:
    """The > 200-day bucket of a seasonal shop: silence alone ranks the December buyers
    (who come back more) as the most gone; the annual-return layer turns that around
    (issue 14; docs/churn.md "Long silences"). Without it the bucket is below a coin."""
    history, cutoff, back = seasonal_shop()
    aucs = {}
    for prior in (1.0, Settings().churn_season_odds):
        settings = eval_settings(Settings(churn_season_odds=prior), 90.0)
        scores = score_at_cutoff(history, cutoff, settings).scores
        long = [u for u, s in scores.items() if s.recency_days >= 200]
        aucs[prior] = roc_auc([scores[u].alert for u in long], [u not in back for u in long])
    assert aucs[1.0] < 0.5 < aucs[Settings().churn_season_odds]
